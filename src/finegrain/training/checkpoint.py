"""The resumable checkpoint: one dict written whole to `<out>/checkpoint.pt` after every epoch.

It holds everything an interrupted fold needs to finish with the same result as an uninterrupted one: model,
optimizer, schedulers, averaged (SWA/EMA) weights, epoch, global step, history, config and the RNG states of
python/numpy/torch/cuda. Only tensors and plain containers go in, so it loads with `weights_only=True`
(no pickled code runs when a checkpoint is read back from shared storage).
"""

from __future__ import annotations

import io
import random
from typing import Any

import numpy as np
import torch

from finegrain import storage


def rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain lists (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": int(version), "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(uri: str, state: dict[str, Any]) -> None:
    """Serialise and write atomically (local temp + rename; an S3 object only appears once complete)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    storage.write_bytes(uri, buffer.getvalue())


def load_checkpoint(uri: str) -> dict[str, Any] | None:
    """The checkpoint at `uri`, or None when there is none yet."""
    if not storage.exists(uri):
        return None
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError:
        return None
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{uri}: unreadable checkpoint ({type(exc).__name__}: {exc}); delete it to restart") from exc
