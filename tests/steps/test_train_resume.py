"""The train step killed and resumed: kill-and-resume equals the uninterrupted run (local and s3://), a
checkpoint of other settings is not resumed, a second writer is refused and a killed one frees the lock.
"""

from __future__ import annotations

import pytest
import torch

from finegrain import storage
from finegrain.steps import train
from tests.support.train_step import BACKBONE, EPOCHS, CrashAfter, load_pt, make_cfg


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
