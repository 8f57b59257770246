"""Small run-level helpers for the train step: device choice, seeding, memory figures."""

from __future__ import annotations

import hashlib
import random
import resource
import sys

import numpy as np
import torch


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but no CUDA device is visible (set train.device=auto or cpu)")
    return torch.device(name)


def derived_seed(*parts: object) -> int:
    """A 31-bit seed that is a pure function of its parts (e.g. (seed, epoch)), stable across processes."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # Deterministic cuDNN kernels make a resumed fold repeat an uninterrupted one; benchmark mode is faster.
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated on the GPU, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux

