"""Fixtures shared by the step tests: one uninterrupted train run."""

from __future__ import annotations

import shutil

import pytest


# Session scope: the test_train_* files all read this one run (a test that changes it works on a copy).
@pytest.fixture(scope="session")
def member(tmp_path_factory):
    """One uninterrupted run; the hook keeps a copy of the last checkpoint (raw + SWA state) for inspection."""
    # lazy: importing the train step costs seconds (torch, timm), which the other step tests need not pay
    from finegrain.steps import train
    from tests.support.manifest_factory import make_manifest
    from tests.support.train_step import BACKBONE, EPOCHS, make_cfg

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
