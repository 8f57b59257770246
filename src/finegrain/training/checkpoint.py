"""The resumable checkpoint: one dict written whole to `<out>/checkpoint.pt` after every epoch.

It holds everything an interrupted fold needs to finish with the same result as an uninterrupted one: model,
optimizer, schedulers, averaged (SWA/EMA) weights, epoch, global step, history, config and the RNG states of
python/numpy/torch/cuda. Only tensors and plain containers go in, so it loads with `weights_only=True`
(no pickled code runs when a checkpoint is read back from shared storage). `checkpoint_state` writes that
dict from a `Training` and `resume` restores one from it, when it was written for the same inputs.
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from finegrain import storage
from finegrain.training.provenance import mismatch

if TYPE_CHECKING:
    from finegrain.training.build import Training


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


def checkpoint_state(training: Training, epoch: int, config: dict, provenance: dict) -> dict[str, Any]:
    """The checkpoint dict after `epoch`: everything `resume` needs to continue exactly where this left off."""
    t = training
    return {
        "model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(), "scheduler": t.scheduler.state_dict(),
        "swa_model": t.swa_model.state_dict() if t.swa_model is not None else None,
        "swa_scheduler": t.swa_scheduler.state_dict() if t.swa_scheduler is not None else None,
        "ema_model": t.ema_model.state_dict() if t.ema_model is not None else None,
        "scaler": None,  # bf16 autocast needs no loss scaling
        "epoch": epoch, "global_step": t.global_step, "history": t.history, "rng": rng_state(),
        "config": config, "provenance": provenance,
    }  # fmt: skip


def resume(training: Training, uri: str, provenance: dict, label: str, discard_with_it: Sequence[str] = ()) -> None:
    """Restore `training` from the checkpoint at `uri` when it was written for the same inputs (`provenance`).

    A checkpoint written for other inputs is deleted, with `discard_with_it` (that attempt's other traces), and
    `training` is left as built: it starts from scratch.
    """
    state = load_checkpoint(uri)
    if state is None:
        return
    why = mismatch(state.get("provenance"), provenance)
    if why is not None:
        print(f"{label}: not resuming from {uri}, written for other inputs ({why}); training from scratch", flush=True)
        storage.delete(uri)
        for other in discard_with_it:
            storage.delete(other)
        return
    t = training
    t.model.load_state_dict(state["model"])
    t.optimizer.load_state_dict(state["optimizer"])
    t.scheduler.load_state_dict(state["scheduler"])
    if t.swa_model is not None:
        t.swa_model.load_state_dict(state["swa_model"])
    if state.get("swa_scheduler") is not None:
        t.start_swa_schedule().load_state_dict(state["swa_scheduler"])
    if t.ema_model is not None:
        t.ema_model.load_state_dict(state["ema_model"])
    set_rng_state(state["rng"])
    t.start_epoch, t.global_step, t.history = state["epoch"] + 1, state["global_step"], list(state["history"])
    print(f"resuming {label} from {uri} after epoch {state['epoch']}")
