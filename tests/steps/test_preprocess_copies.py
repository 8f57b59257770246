"""The preprocess step with kinds of copy: what the manifest, the folds and both reports make of confirmed pairs.

The pixel check is replaced by a hand-made pairs table (a, b, same, rule, similarity, changed) over a small
ImageFolder set, so these tests hold whatever the check finds; the exact copy is a real one (same bytes).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import yaml
from typer.testing import CliRunner

from finegrain.cli import app
from finegrain.config import load_config
from finegrain.preprocess.copies import PAIR_COLUMNS, group_copies
from finegrain.steps import preprocess
from tests.support.datasets import imagefolder
from tests.support.paths import REPO

# image_id pairs the fake check confirms (and one it rejects)
LINKS = [("train/cat/cat0", "train/cat/cat1", True, "overlay"), ("train/cat/cat2", "train/cat/cat3", True, "crop"),
         ("train/dog/dog0", "train/dog/dog1", True, "crop+overlay"), ("train/dog/dog2", "train/dog/dog3", False, "")]  # fmt: skip


def _fake_confirm(table, thumbs, edges, candidates, cfg, pool=None):
    row = {iid: i for i, iid in enumerate(table["image_id"])}
    pairs = pd.DataFrame([(row[a], row[b], same, rule, 0.95 if same else 0.7, 0.03) for a, b, same, rule in LINKS],
                         columns=PAIR_COLUMNS)  # fmt: skip
    return group_copies(len(table), edges, pairs, cfg.preprocess.near_duplicate_action)


def _data(root: Path) -> Path:
    data = imagefolder(root, {"cat": 8, "dog": 8}, n_test=2, size=(40, 32))
    shutil.copy(data / "train" / "cat" / "cat4.jpg", data / "train" / "cat" / "cat_copy.jpg")  # exact
    return data


def _run(tmp_path: Path, monkeypatch, *overrides: str) -> tuple[pd.DataFrame, dict, str, str]:
    monkeypatch.setattr(preprocess, "confirm_candidates", _fake_confirm)
    quiet = ["tracking.enabled=false", "preprocess.workers=1"]
    cfg = load_config(REPO / "configs" / "sample.yaml", [*quiet, *overrides])
    out = tmp_path / "out"
    summary = preprocess.run(cfg, str(_data(tmp_path / "data")), str(out))
    manifest = pd.read_parquet(out / "manifest.parquet").set_index("image_id")
    return manifest, summary, (out / "report.md").read_text("utf-8"), (out / "report.html").read_text("utf-8")


def test_same_fold_copies_train_in_one_fold_and_drop_copies_go(tmp_path: Path, monkeypatch) -> None:
    m, summary, report, page = _run(tmp_path, monkeypatch)
    columns = list(m.columns)
    assert m["fold_group"].dtype == "int64" and columns.index("fold_group") == columns.index("dup_group") + 1
    # overlay and crop+overlay: both pictures kept, in one fold, in no duplicate group
    for a, b in (("train/cat/cat0", "train/cat/cat1"), ("train/dog/dog0", "train/dog/dog1")):
        assert m.at[a, "status"] == m.at[b, "status"] == "ok" and m.at[a, "fold"] == m.at[b, "fold"] >= 0
        assert m.at[a, "dup_group"] == m.at[b, "dup_group"] == -1
        assert m.at[a, "fold_group"] == m.at[b, "fold_group"] >= 0 and "kept, same fold" in m.at[a, "reason"]
    # crop and exact: one kept, the other out of training
    for a, b, status in (("train/cat/cat2", "train/cat/cat3", "near_duplicate"),
                         ("train/cat/cat4", "train/cat/cat_copy", "duplicate")):  # fmt: skip
        assert sorted([m.at[a, "status"], m.at[b, "status"]]) == sorted(["ok", status])
        assert m.at[a, "dup_group"] == m.at[b, "dup_group"] >= 0
        assert m.at[a, "fold_group"] == m.at[b, "fold_group"]
    assert m.at["train/dog/dog2", "fold_group"] == m.at["train/dog/dog3", "fold_group"] == -1  # rejected
    assert summary["dup_groups"] == 2 and summary["fold_groups"] == 4 and summary["kept_in_one_fold"] == 2
    assert summary["status"]["near_duplicate"] == 1 and summary["status"]["duplicate"] == 1

    counts = report.split("### Copies by kind", 1)[1]
    assert "| exact | 1 | drop |" in counts and "| crop | 2 | drop |" in counts
    assert "| overlay | 2 | same_fold |" in counts and "| flip | 0 | drop |" in counts
    assert "| train/dog/dog0.jpg | train/dog/dog1.jpg | crop+overlay | same_fold | 0.95 | 0.03 |" in report
    assert "| train/cat/cat2.jpg | train/cat/cat3.jpg | crop | drop |" in report
    assert "Closest rejected candidates" in report
    assert "| train/dog/dog2.jpg | train/dog/dog3.jpg | 0.7 | 0.03 |" in report
    assert "Copies by kind" in page and "The 3 confirmed near-duplicate pairs" in page
    assert "<td>crop+overlay</td><td>same_fold</td>" in page
    assert "<td>overlay</td><td>2</td><td>same_fold</td>" in page
    assert "title='train/cat/cat1.jpg: matches train/cat/cat0.jpg (overlay)" in page  # pictured, with the why


def test_an_override_drops_overlay_copies_too(tmp_path: Path, monkeypatch) -> None:
    m, summary, report, _ = _run(tmp_path, monkeypatch, "preprocess.near_duplicate_action.overlay=drop")
    assert sorted(m.loc[["train/cat/cat0", "train/cat/cat1"], "status"]) == ["near_duplicate", "ok"]
    assert m.at["train/dog/dog0", "dup_group"] == m.at["train/dog/dog1", "dup_group"] >= 0
    assert summary["dup_groups"] == summary["fold_groups"] == 4 and "| overlay | 2 | drop |" in report
    assert summary["kept_in_one_fold"] == 0


def test_the_cli_takes_the_option_and_names_a_wrong_kind(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(preprocess, "confirm_candidates", _fake_confirm)
    data, out = _data(tmp_path / "data"), tmp_path / "out"
    base = ["preprocess", "--data", str(data), "--out", str(out), "--config", str(REPO / "configs" / "sample.yaml"),
            "--set", "tracking.enabled=false", "--set", "preprocess.workers=1"]  # fmt: skip
    result = CliRunner().invoke(app, [*base, "--set", "preprocess.near_duplicate_action.watermark=drop"])
    assert result.exit_code == 2, result.output
    assert "preprocess.near_duplicate_action: Value error, unknown kind" in result.output
    assert "watermark" in result.output and "exact, reencode, resize, crop" in result.output
    result = CliRunner().invoke(app, [*base, "--set", "preprocess.near_duplicate_action.crop=same_fold"])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((out / "config.yaml").read_text("utf-8"))["preprocess"]["near_duplicate_action"]
    assert saved["crop"] == saved["overlay"] == "same_fold" and saved["resize"] == "drop"
    assert json.loads((out / "summary.json").read_text("utf-8"))["dup_groups"] == 1  # only the exact copy
