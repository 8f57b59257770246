"""The train step's outputs on CPU with a tiny timm backbone: the file contract in manifest order, a falling
loss, saved == evaluated weights, SWA weights with recomputed BatchNorm statistics, the packaged
EfficientNet-Lite0.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from finegrain.config import Config, config_from_dict
from finegrain.data.loader import CachedImageDataset, build_image_cache, fold_rows, load_manifest, make_loader
from finegrain.data.transforms import DeviceNormalizer, EvalPreset
from finegrain.metrics import log_loss, softmax
from finegrain.steps import train
from finegrain.training.loop import predict
from tests.support.manifest_factory import make_manifest
from tests.support.train_step import BACKBONE, EPOCHS, load_npz, load_pt, make_cfg


def test_outputs_follow_the_contract_and_manifest_order(member):
    out, metrics = member["out"], member["metrics"]
    assert {p.name for p in out.iterdir()} >= {"model.pt", "oof.npz", "test.npz", "metrics.json", "config.yaml"}
    assert not (out / "checkpoint.pt").exists()
    table, classes = load_manifest(str(member["prep"]))
    _, val, test = fold_rows(table, 0)
    oof, tst = load_npz(str(out / "oof.npz")), load_npz(str(out / "test.npz"))
    c = len(classes["classes"])
    assert list(oof["image_id"]) == list(val["image_id"]) and list(tst["image_id"]) == list(test["image_id"])
    assert list(oof["classes"]) == list(tst["classes"]) == classes["classes"]
    assert oof["logits"].shape == (len(val), c) and tst["logits"].shape == (len(test), c)
    assert oof["embeddings"].shape == (len(val), 16)
    assert np.array_equal(oof["labels"], val["class_index"].to_numpy())
    confusion = json.loads((out / "confusion.json").read_text(encoding="utf-8"))  # rows true, columns predicted
    assert confusion["classes"] == classes["classes"] and np.array(confusion["matrix"]).shape == (c, c)
    assert np.array_equal(np.array(confusion["matrix"]).sum(axis=1), np.bincount(oof["labels"], minlength=c))
    assert np.trace(np.array(confusion["matrix"])) == (oof["logits"].argmax(1) == oof["labels"]).sum()
    # at any class count (the KFP UI's confusion matrix stops at 40): the fold's error page, with pictures
    errors = (out / "errors.html").read_text(encoding="utf-8")
    assert "Per class" in errors and "data:image/jpeg;base64," in errors and str(member["prep"]) not in errors
    for key in ("backbone", "fold", "val_logloss", "val_accuracy", "epochs", "train_img_per_s", "peak_memory_mb"):
        assert key in metrics
    # the headline val_logloss is after one temperature fitted on the fold's validation rows; raw beside it
    logits, labels = oof["logits"].astype(np.float64), oof["labels"]
    assert metrics["val_logloss_raw"] == pytest.approx(log_loss(labels, softmax(logits)))
    assert metrics["val_logloss"] == pytest.approx(log_loss(labels, softmax(logits, metrics["val_temperature"])))
    assert metrics["val_logloss"] <= metrics["val_logloss_raw"] + 1e-9
    assert all(h["val_logloss"] <= h["val_logloss_raw"] + 1e-9 and h["val_temperature"] > 0 for h in metrics["history"])
    assert metrics["backbone"] == BACKBONE and metrics["fold"] == 0 and metrics["epochs"] == EPOCHS
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert config_from_dict(__import__("yaml").safe_load((out / "config.yaml").read_text())) == member["cfg"]


def test_loss_falls(member):
    losses = [h["train_loss"] for h in member["metrics"]["history"]]
    assert member["epochs_seen"] == list(range(EPOCHS))
    assert losses[-1] < losses[0], losses


def test_saved_weights_are_the_evaluated_ones(member):
    """model.pt loads with weights_only=True, and its weights reproduce oof.npz exactly."""
    from finegrain.models import build_model

    saved = load_pt(str(member["out"] / "model.pt"))
    cfg = Config.model_validate(saved["config"])
    assert saved["classes"] == load_manifest(str(member["prep"]))[1]["classes"] and saved["weights"] == "swa"
    model = build_model(cfg.train.backbone(BACKBONE), cfg.train.head, num_classes=saved["num_classes"])
    model.load_state_dict(saved["state_dict"])
    table, _ = load_manifest(str(member["prep"]))
    _, val, _ = fold_rows(table, 0)
    cache = build_image_cache(val["path"], round(cfg.train.cache_scale * 32), member["root"] / "cache-check")
    ds = CachedImageDataset(cache, range(len(val)), val["class_index"], EvalPreset(32, saved["mean"], saved["std"]))
    loader = make_loader(ds, 8, seed=0, train=False, num_workers=0, pin_memory=False)
    prepare = DeviceNormalizer(saved["mean"], saved["std"], torch.device("cpu"), channels_last=True)
    logits, _ = predict(model, loader, prepare, amp=False, views=cfg.train.tta)
    np.testing.assert_allclose(logits, load_npz(str(member["out"] / "oof.npz"))["logits"], rtol=1e-4, atol=1e-4)


def test_swa_weights_differ_from_last_raw_weights_and_bn_was_recomputed(member):
    last = torch.load(member["root"] / "last_checkpoint.pt", weights_only=True)
    final = load_pt(str(member["out"] / "model.pt"))["state_dict"]
    raw, swa_buffers = last["model"], {k.removeprefix("module."): v for k, v in last["swa_model"].items()}
    weights = [k for k, v in final.items() if v.is_floating_point() and "running" not in k]
    assert any(not torch.equal(final[k], raw[k]) for k in weights), "SWA average equals the last raw weights"
    means = [k for k in final if k.endswith("running_mean")]
    assert means, "test backbone should have BatchNorm"
    # AveragedModel keeps the BN buffers it was created with; the saved ones come from the final BN pass.
    assert all(not torch.equal(final[k], swa_buffers[k]) for k in means)
    assert any(not torch.equal(final[k], raw[k]) for k in means)


def test_packaged_efficientnet_lite0_trains(tmp_path):
    prep = make_manifest(tmp_path, n_classes=3, per_class=4, n_test=2)
    cfg = make_cfg(
        tmp_path / "cache", "train.backbones=[{name: efficientnet_lite0, pretrained: 'package:efficientnet_lite0'}]",
        "train.epochs=1", "train.swa.start_epoch=0", "train.max_steps_per_epoch=2", "train.image_size=64",
        "train.batch_size=4",
    )  # fmt: skip
    metrics = train.run(cfg, str(prep), 1, "efficientnet_lite0", str(tmp_path / "out"))
    assert np.isfinite(metrics["val_logloss"]) and metrics["weights"] == "swa"
    assert load_pt(str(tmp_path / "out" / "model.pt"))["backbone"] == "efficientnet_lite0"
