"""The batch-prediction components' `python_func` with real artifact objects, where no model is needed: the plan's
listing and shards, and collect putting shards that finished in any order back in input order. A shard predicting
with a registered model runs in tests/orchestration/test_local_run.py (the whole pipeline through kfp.local)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from kfp import dsl

from components.predict.component import collect_predictions, plan_predict
from finegrain.config import config_to_text, load_config
from finegrain.orchestration.kfp_predict import ERRORS_FILE, PREDICTIONS_FILE, SHARD_FILE, shard_items
from tests.support.paths import REPO


def _art(kind, root: Path, name: str):
    return kind(name=name, uri=str(root / "kfp" / name), metadata={})


def test_shards_cover_the_list_in_order():
    assert shard_items(5, 2) == [
        {"shard": 0, "start": 0, "stop": 2}, {"shard": 1, "start": 2, "stop": 4}, {"shard": 2, "start": 4, "stop": 5}
    ]  # fmt: skip
    assert shard_items(4, 10) == [{"shard": 0, "start": 0, "stop": 4}]


def test_plan_lists_the_images_and_fans_out_over_shards(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(5):
        (images / f"img{i}.jpg").write_bytes(b"x")
    cfg = load_config(REPO / "configs" / "sample.yaml", ["predict.images_per_shard=2"])
    listing = _art(dsl.Artifact, tmp_path, "listing")
    items = plan_predict.python_func(config_to_text(cfg), "", str(images), str(tmp_path / "p.csv"), listing)
    assert [(i["start"], i["stop"]) for i in items] == [(0, 2), (2, 4), (4, 5)]
    saved = json.loads(Path(listing.path, "listing.json").read_text(encoding="utf-8"))
    assert saved["ids"] == [f"img{i}" for i in range(5)] and saved["model_uri"] == "models:/finegrain-ensemble@champion"
    assert listing.metadata["images"] == 5 and listing.metadata["shards"] == 3


def _part(root: Path, shard: int, rows: list[tuple[str, float]], errors: list[tuple[str, str]]) -> dsl.Artifact:
    part = _art(dsl.Artifact, root, f"part{shard}")
    Path(part.path).mkdir(parents=True)
    pd.DataFrame([(i, p, 1 - p) for i, p in rows], columns=["ID", "c1", "c2"]).to_csv(Path(part.path, PREDICTIONS_FILE), index=False)
    pd.DataFrame([(i, f"/d/{i}.jpg", e) for i, e in errors], columns=["ID", "path", "error"]).to_csv(
        Path(part.path, ERRORS_FILE), index=False
    )
    Path(part.path, SHARD_FILE).write_text(json.dumps({"shard": shard}))
    return part


def _listing(root: Path, ids: list[str], out: Path) -> dsl.Artifact:
    listing = _art(dsl.Artifact, root, "listing")
    Path(listing.path).mkdir(parents=True)
    body = {"config_text": "", "model_uri": "models:/m@champion", "out_uri": str(out), "ids": ids,
            "uris": [f"/d/{i}.jpg" for i in ids]}  # fmt: skip
    Path(listing.path, "listing.json").write_text(json.dumps(body))
    return listing


def test_collect_restores_input_order_and_lists_the_failures(tmp_path):
    out = tmp_path / "out" / "predictions.csv"
    listing = _listing(tmp_path, ["001", "b", "c", "d<|x>", "e"], out)
    parts = [  # finished out of order; an ID that looks like a number stays text
        _part(tmp_path, 2, [("e", 0.5)], []),
        _part(tmp_path, 0, [("001", 0.1)], [("b", "not an image")]),
        _part(tmp_path, 1, [("c", 0.3)], [("d<|x>", "cannot read it")]),
    ]
    dataset, report = _art(dsl.Dataset, tmp_path, "predictions"), _art(dsl.Markdown, tmp_path, "report")
    summary = json.loads(collect_predictions.python_func(listing, parts, dataset, report))
    assert summary == {"predictions": str(out), "rows": 3, "errors": str(out.parent / "predictions.errors.csv")}
    written = pd.read_csv(out, encoding="utf-8-sig", dtype={"ID": str})
    assert list(written["ID"]) == ["001", "c", "e"]
    assert Path(dataset.path).read_bytes() == out.read_bytes()
    errors = pd.read_csv(out.parent / "predictions.errors.csv", encoding="utf-8-sig")
    assert list(errors["ID"]) == ["b", "d<|x>"]
    page = Path(report.path).read_text(encoding="utf-8")
    assert "3 of 5 images predicted" in page and "/d/d&lt;\\|x&gt;.jpg" in page and "<|x>" not in page


def test_collect_refuses_shards_that_do_not_add_up_to_the_listing(tmp_path):
    listing = _listing(tmp_path, ["a", "b", "c"], tmp_path / "p.csv")
    parts = [_part(tmp_path, 0, [("a", 0.1)], [])]
    with pytest.raises(RuntimeError, match="shards hold 1 images, the listing 3"):
        collect_predictions.python_func(
            listing, parts, _art(dsl.Dataset, tmp_path, "predictions"), _art(dsl.Markdown, tmp_path, "report")
        )
