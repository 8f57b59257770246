"""One epoch of a member: train it (`train_one_epoch`), fold it into the SWA average, evaluate on validation.

The sampler order, dropout/drop-path and mixing of an epoch are seeded from (seed, epoch), so a member resumed
from a checkpoint repeats what an uninterrupted run would have done.
"""

from __future__ import annotations

import functools
import json

import torch
from tqdm import tqdm

from finegrain.metrics import accuracy, log_loss, softmax
from finegrain.training.build import TrainSetup
from finegrain.training.loop import predict, train_one_epoch
from finegrain.training.runtime import derived_seed

LOSS_EVERY = 20  # steps between loss readouts on the bar: reading the loss syncs the GPU


def run_epoch(setup: TrainSetup, epoch: int) -> dict:
    """Train and evaluate `epoch`; returns its record (also appended to the history and printed as JSON)."""
    tc, data, t = setup.cfg.train, setup.data, setup.training
    data.train_loader.sampler.set_epoch(epoch)
    torch.manual_seed(derived_seed(tc.seed, epoch, "torch"))  # dropout/drop-path: f(seed, epoch)
    in_swa = t.in_swa(epoch)
    if in_swa and t.swa_scheduler is None:
        t.start_swa_schedule()
    with tqdm(total=t.steps_per_epoch, desc=f"{setup.label} epoch {epoch + 1}/{tc.epochs}", leave=False) as bar:
        stats = train_one_epoch(
            t.model, t.embed, t.loss_fn, t.optimizer, None if in_swa else t.scheduler, data.train_loader,
            data.prepare, amp=tc.amp, grad_clip=tc.grad_clip, mix=t.mix,
            mix_generator=torch.Generator().manual_seed(derived_seed(tc.seed, epoch, "mix")),
            max_steps=tc.max_steps_per_epoch, ema=t.ema_model, progress=functools.partial(show_progress, bar),
        )  # fmt: skip
    if in_swa:
        t.swa_model.update_parameters(t.model)
        t.swa_scheduler.step()
    t.global_step += stats["steps"]
    watched = t.ema_model.module if t.ema_model is not None else t.model
    val_logits, _ = predict(watched, data.val_loader, data.prepare, amp=tc.amp)
    val_labels = data.val_rows["class_index"].to_numpy()
    record = {
        "epoch": epoch, "train_loss": stats["train_loss"], "lr": stats["lr"], "img_per_s": stats["img_per_s"],
        "train_images": stats["images"], "train_seconds": stats["seconds"],
        "val_logloss": log_loss(val_labels, softmax(val_logits)),
        "val_accuracy": accuracy(val_labels, val_logits),
    }  # fmt: skip
    t.history.append(record)
    print(json.dumps(record))
    return record


def show_progress(bar: tqdm, step: int, loss: torch.Tensor) -> None:
    """`train_one_epoch`'s progress callback: advance the bar, and show the loss every LOSS_EVERY steps."""
    bar.update(1)
    if step % LOSS_EVERY == 0:
        bar.set_postfix(loss=f"{float(loss):.3f}")
