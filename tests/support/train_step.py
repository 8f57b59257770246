"""Settings and readers for the train step tests (tests/steps/test_train_*.py): a tiny CPU config, a simulated
kill, and loaders for the step's model.pt and .npz outputs (local or s3://).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from finegrain import storage
from finegrain.config import Config, config_from_dict

BACKBONE = "test_efficientnet"  # tiny, and has BatchNorm (so SWA's BN pass is exercised)
EPOCHS = 3


def make_cfg(cache: Path, *extra: str) -> Config:
    """A few-second CPU training config (tiny images, 3 short epochs, SWA from epoch 1), plus `extra` overrides."""
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
    """A saved .pt file (local path or s3://), loaded with weights_only=True."""
    return torch.load(io.BytesIO(storage.read_bytes(uri)), map_location="cpu", weights_only=True)


def load_npz(uri: str) -> dict:
    """The arrays of a saved .npz file (local path or s3://)."""
    with np.load(io.BytesIO(storage.read_bytes(uri)), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
