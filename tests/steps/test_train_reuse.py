"""A finished train member is reused only for the same settings and manifest (its recorded provenance);
changed image size, manifest, missing provenance or unreadable metrics: retrained, saying why.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from finegrain.steps import train
from tests.support.train_step import BACKBONE, EPOCHS, load_npz, load_pt, make_cfg


def test_rerun_after_completion_returns_outputs_without_training(member):
    called = []
    again = train.run(member["cfg"], str(member["prep"]), 0, BACKBONE, str(member["out"]), on_epoch_end=lambda *a: called.append(a))
    assert again == member["metrics"] and not called


def _copy_member(member, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(member["out"], out)
    return out


def test_finished_member_is_reused_when_only_other_backbones_or_speed_settings_change(member, tmp_path, capsys):
    out = _copy_member(member, tmp_path)
    cfg = make_cfg(member["root"] / "cache", f"train.backbones=[{BACKBONE}, resnet18]", "train.num_workers=1")
    called = []
    again = train.run(cfg, str(member["prep"]), 0, BACKBONE, str(out), on_epoch_end=lambda *a: called.append(a))
    assert again == member["metrics"] and not called
    assert "reusing the finished member" in capsys.readouterr().out


def test_finished_member_is_retrained_when_image_size_changed(member, tmp_path, capsys):
    out = _copy_member(member, tmp_path)
    epochs = []
    cfg = make_cfg(member["root"] / "cache", "train.image_size=40")
    metrics = train.run(cfg, str(member["prep"]), 0, BACKBONE, str(out), on_epoch_end=lambda e, r: epochs.append(e))
    assert epochs == list(range(EPOCHS)) and metrics["image_size"] == 40
    assert json.loads((out / "metrics.json").read_text())["image_size"] == 40
    assert load_pt(str(out / "model.pt"))["image_size"] == 40
    assert metrics["provenance"]["fingerprint"] != member["metrics"]["provenance"]["fingerprint"]
    said = capsys.readouterr().out
    assert "retraining from scratch" in said and "train.image_size 32 -> 40" in said, said


def test_finished_member_is_retrained_when_the_manifest_changed(member, tmp_path, capsys):
    out = _copy_member(member, tmp_path)
    prep = tmp_path / "prep"
    shutil.copytree(member["prep"], prep)
    table = pd.read_parquet(prep / "manifest.parquet")
    table = table.drop(index=table.index[table["split"] == "test"][-1])  # one test image fewer
    table.to_parquet(prep / "manifest.parquet", index=False)
    epochs = []
    metrics = train.run(member["cfg"], str(prep), 0, BACKBONE, str(out), on_epoch_end=lambda e, r: epochs.append(e))
    assert epochs == list(range(EPOCHS))
    assert metrics["n_test"] == member["metrics"]["n_test"] - 1
    assert load_npz(str(out / "test.npz"))["logits"].shape[0] == metrics["n_test"]
    assert "manifest content changed" in capsys.readouterr().out


def test_member_without_recorded_provenance_is_retrained(member, tmp_path, capsys):
    out = _copy_member(member, tmp_path)
    old = {k: v for k, v in member["metrics"].items() if k != "provenance"}
    (out / "metrics.json").write_text(json.dumps(old))
    epochs = []
    train.run(member["cfg"], str(member["prep"]), 0, BACKBONE, str(out), on_epoch_end=lambda e, r: epochs.append(e))
    assert epochs == list(range(EPOCHS))
    assert "no fingerprint recorded" in capsys.readouterr().out


def test_member_with_unreadable_metrics_is_retrained(member, tmp_path, capsys):
    out = _copy_member(member, tmp_path)
    (out / "metrics.json").write_text('{"backbone": "cut off mid-wri')
    epochs = []
    metrics = train.run(member["cfg"], str(member["prep"]), 0, BACKBONE, str(out), on_epoch_end=lambda e, r: epochs.append(e))
    assert epochs == list(range(EPOCHS))
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert "unreadable metrics.json" in capsys.readouterr().out


def test_provenance_names_what_changed_and_ignores_other_members():
    from finegrain.training.provenance import member_provenance, mismatch

    base = make_cfg(Path("cache"))
    a = member_provenance(base, BACKBONE, 0, "m1")
    assert mismatch(a, member_provenance(make_cfg(Path("elsewhere"), "train.num_workers=4"), BACKBONE, 0, "m1")) is None
    spec = f"train.backbones=[{{name: {BACKBONE}, image_size: 64}}, other]"
    why = mismatch(a, member_provenance(make_cfg(Path("cache"), spec), BACKBONE, 0, "m1"))
    assert why == "settings changed: train.backbone.image_size None -> 64"
    why = mismatch(a, member_provenance(base, BACKBONE, 1, "m2"))
    assert "manifest content changed (m1 -> m2)" in why and "fold 0 -> 1" in why
