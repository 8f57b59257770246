"""The train step end to end on CPU with tiny timm backbones: outputs, saved == evaluated weights, SWA,
kill-and-resume equality (local and s3://), MLflow logging and surviving a dead tracking server."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from finegrain import storage
from finegrain.config import Config, config_from_dict
from finegrain.data.loader import CachedImageDataset, build_image_cache, fold_rows, load_manifest, make_loader
from finegrain.data.transforms import DeviceNormalizer, EvalPreset
from finegrain.steps import train
from finegrain.training.loop import predict, train_one_epoch
from finegrain.training.swa import recompute_bn_stats
from tests.support.manifest_factory import make_manifest

BACKBONE = "test_efficientnet"  # tiny, and has BatchNorm (so SWA's BN pass is exercised)
EPOCHS = 3


def make_cfg(cache: Path, *extra: str) -> Config:
    return config_from_dict(
        {},
        [
            f"train.backbones=[{BACKBONE}]", "train.image_size=32", "train.batch_size=8", f"train.epochs={EPOCHS}",
            "train.max_steps_per_epoch=3", "train.num_workers=0", "train.head.embedding_dim=16", "train.lr=0.003",
            "train.warmup_epochs=0.3", "train.swa.start_epoch=1", "train.tta=[identity, hflip]", "tracking.enabled=false",
            f"train.cache_dir={cache}", *extra,
        ],
    )  # fmt: skip


class CrashAfter:
    """on_epoch_end hook that simulates a preempted node right after epoch `epoch`'s checkpoint."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, epoch: int, record: dict) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"simulated kill after epoch {epoch}")


def load_pt(uri: str) -> dict:
    return torch.load(io.BytesIO(storage.read_bytes(uri)), map_location="cpu", weights_only=True)


def load_npz(uri: str) -> dict:
    with np.load(io.BytesIO(storage.read_bytes(uri)), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def member(tmp_path_factory):
    """One uninterrupted run; the hook keeps a copy of the last checkpoint (raw + SWA state) for inspection."""
    root = tmp_path_factory.mktemp("member")
    prep = make_manifest(root)
    out = root / "out"
    seen = []

    def keep_last_checkpoint(epoch: int, record: dict) -> None:
        seen.append(epoch)
        if epoch == EPOCHS - 1:
            shutil.copy(out / "checkpoint.pt", root / "last_checkpoint.pt")

    cfg = make_cfg(root / "cache")
    metrics = train.run(cfg, str(prep), 0, BACKBONE, str(out), on_epoch_end=keep_last_checkpoint)
    return {"root": root, "prep": prep, "out": out, "cfg": cfg, "metrics": metrics, "epochs_seen": seen}


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
    for key in ("backbone", "fold", "val_logloss", "val_accuracy", "epochs", "train_img_per_s", "peak_memory_mb"):
        assert key in metrics
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


def test_rerun_after_completion_returns_outputs_without_training(member):
    called = []
    again = train.run(member["cfg"], str(member["prep"]), 0, BACKBONE, str(member["out"]), on_epoch_end=lambda *a: called.append(a))
    assert again == member["metrics"] and not called


def test_kill_and_resume_gives_the_uninterrupted_result(member, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        train.run(member["cfg"], str(member["prep"]), 0, BACKBONE, str(out), on_epoch_end=CrashAfter(0))
    assert (out / "checkpoint.pt").exists() and not (out / "metrics.json").exists()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 0 and len(state["history"]) == 1
    resumed_epochs = []
    metrics = train.run(member["cfg"], str(member["prep"]), 0, BACKBONE, str(out), on_epoch_end=lambda e, r: resumed_epochs.append(e))
    assert resumed_epochs == list(range(1, EPOCHS))
    assert metrics["val_logloss"] == member["metrics"]["val_logloss"]
    assert [h["train_loss"] for h in metrics["history"]] == [h["train_loss"] for h in member["metrics"]["history"]]
    a, b = load_pt(str(out / "model.pt"))["state_dict"], load_pt(str(member["out"] / "model.pt"))["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


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


def test_checkpoint_of_other_settings_is_not_resumed(member, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        train.run(member["cfg"], str(member["prep"]), 0, BACKBONE, str(out), on_epoch_end=CrashAfter(1))
    (out / "tracking").mkdir(exist_ok=True)
    (out / "tracking" / "mlflow_run_id").write_text("run-of-the-other-settings")
    epochs = []
    cfg = make_cfg(member["root"] / "cache", "train.lr=0.001")
    metrics = train.run(cfg, str(member["prep"]), 0, BACKBONE, str(out), on_epoch_end=lambda e, r: epochs.append(e))
    assert epochs == list(range(EPOCHS)) and len(metrics["history"]) == EPOCHS
    assert metrics["lr"] == 0.001 and not (out / "tracking" / "mlflow_run_id").exists()
    said = capsys.readouterr().out
    assert "not resuming" in said and "train.lr 0.003 -> 0.001" in said, said


class SpyModel(nn.Module):
    """Records the labels the loop hands to the head (a margin head needs them in training)."""

    def __init__(self) -> None:
        super().__init__()
        self.body, self.fc, self.calls, self.updates = nn.Linear(3, 4), nn.Linear(4, 3), [], []

    def embed(self, x):
        return self.body(x.mean(dim=(2, 3)))

    def head(self, emb, labels=None, update_stats=True):
        self.calls.append(None if labels is None else labels.clone())
        self.updates.append(update_stats)
        return self.fc(emb)


@pytest.mark.parametrize("mix", [None, {"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "prob": 1.0}])
def test_loop_passes_labels_to_the_head_also_when_mixing(mix):
    model = SpyModel()
    y = torch.tensor([0, 1, 2, 0])
    batches = [(torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8), y)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    prepare = DeviceNormalizer((0.5,) * 3, (0.25,) * 3, torch.device("cpu"), channels_last=False)
    stats = train_one_epoch(
        model, model.embed, nn.functional.cross_entropy, opt, None, batches, prepare, amp=False, grad_clip=1.0,
        mix=mix, mix_generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert stats["steps"] == 1 and all(c is not None for c in model.calls)
    assert torch.equal(model.calls[0], y)
    if mix:  # the head scores both label sets of the mixed batch, each with its margin
        assert len(model.calls) == 2 and sorted(model.calls[1].tolist()) == sorted(y.tolist())
        assert model.updates == [True, False], "margin statistics must be updated once per batch"


def test_recompute_bn_stats_matches_the_data():
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm2d(3)

        def embed(self, x):
            return self.bn(x)

    model = Tiny()
    data = [torch.randn(6, 3, 4, 4) * 2 + 5 for _ in range(3)]
    seen = recompute_bn_stats(model, [(x, None) for x in data], prepare=lambda x: x)
    assert seen == 3
    torch.testing.assert_close(model.bn.running_mean, torch.cat(data).mean(dim=(0, 2, 3)), atol=1e-4, rtol=1e-4)


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


@pytest.mark.s3
def test_checkpoint_on_s3_and_resume_from_it(member, s3_bucket):
    out = f"{s3_bucket}/train/{BACKBONE}/fold0"
    with pytest.raises(KeyboardInterrupt):
        train.run(member["cfg"], str(member["prep"]), 0, BACKBONE, out, on_epoch_end=CrashAfter(1))
    assert storage.exists(f"{out}/checkpoint.pt") and not storage.exists(f"{out}/metrics.json")
    metrics = train.run(member["cfg"], str(member["prep"]), 0, BACKBONE, out)
    assert metrics["val_logloss"] == member["metrics"]["val_logloss"]
    assert not storage.exists(f"{out}/checkpoint.pt")
    for name in ("model.pt", "oof.npz", "test.npz", "config.yaml", "metrics.json", "tracking/metrics.jsonl"):
        assert storage.exists(f"{out}/{name}"), name


@pytest.mark.slow
@pytest.mark.mlflow_server
def test_mlflow_run_has_params_epoch_metrics_and_artifacts(member, mlflow_server, tmp_path):
    from mlflow import MlflowClient

    cfg = member["cfg"].model_copy(deep=True)
    cfg.tracking.enabled, cfg.tracking.uri, cfg.tracking.experiment = True, mlflow_server.uri, "train-test"
    metrics = train.run(cfg, str(member["prep"]), 0, BACKBONE, str(tmp_path / "out"))
    client = MlflowClient(mlflow_server.uri)
    run = client.get_run(metrics["mlflow_run_id"])
    assert run.info.run_name == f"{BACKBONE}/fold0" and run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == str(EPOCHS) and run.data.params["train.head.embedding_dim"] == "16"
    history = client.get_metric_history(run.info.run_id, "val_logloss")
    assert sorted(m.step for m in history) == list(range(EPOCHS))
    for key in ("train_loss", "lr", "img_per_s", "val_accuracy"):
        assert len(client.get_metric_history(run.info.run_id, key)) == EPOCHS
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "config.yaml", "oof.npz", "test.npz"} <= artifacts


@pytest.mark.slow
@pytest.mark.mlflow_server
def test_training_survives_the_tracking_server_dying(member, tmp_path, mlflow_db_template):
    from tests.support.servers import MlflowServer

    server = MlflowServer(tmp_path / "mlflow", db_template=mlflow_db_template)
    cfg = member["cfg"].model_copy(deep=True)
    cfg.tracking.enabled, cfg.tracking.uri, cfg.tracking.retries = True, server.uri, 0

    def kill_server(epoch: int, record: dict) -> None:
        if epoch == 0:
            server.stop()

    try:
        metrics = train.run(cfg, str(member["prep"]), 0, BACKBONE, str(tmp_path / "out"), on_epoch_end=kill_server)
    finally:
        server.stop()
    assert metrics["epochs"] == EPOCHS and (tmp_path / "out" / "metrics.json").exists()
    rows = [json.loads(line) for line in (tmp_path / "out" / "tracking" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if r["kind"] == "metrics" and "val_logloss" in r["data"]]
    assert steps == list(range(EPOCHS))


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


def test_second_writer_on_a_member_is_refused_before_touching_it(member, tmp_path):
    from finegrain.storage.locks import LOCK_NAME, LockHeld, hold_lock

    out = tmp_path / "out"
    with hold_lock(str(out / LOCK_NAME), "the first writer"):
        with pytest.raises(LockHeld, match="the first writer"):
            train.run(member["cfg"], str(member["prep"]), 0, BACKBONE, str(out))
        assert {p.name for p in out.iterdir()} == {LOCK_NAME}
    with pytest.raises(KeyboardInterrupt):  # the lock is free again, and freed again by a killed attempt
        train.run(member["cfg"], str(member["prep"]), 0, BACKBONE, str(out), on_epoch_end=CrashAfter(0))
    assert (out / "checkpoint.pt").exists() and not (out / LOCK_NAME).exists()
