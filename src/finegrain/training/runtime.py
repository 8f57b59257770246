"""Small run-level helpers for the train step: device choice, seeding, memory figures."""

from __future__ import annotations

import hashlib
import os
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


def cpu_threads(parallel_members: int) -> int:
    """Intra-op threads for one member trained on CPU: this process's cores shared by the members that train at
    once (`pipeline.parallelism` on one machine). More threads than free cores is not just no faster: PyTorch's
    OpenMP workers spin while they wait; on the shared 2-core development machine a training image cost 11x the
    CPU time with 2 threads as with 1 (docs/performance.md, "CPU threads per member")."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, parallel_members))


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

