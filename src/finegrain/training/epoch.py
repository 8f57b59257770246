"""One epoch of a member: train it (`train_one_epoch`), fold it into the SWA average, evaluate on validation.

The sampler order, dropout/drop-path and mixing of an epoch are seeded from (seed, epoch), so a member resumed
from a checkpoint repeats what an uninterrupted run would have done.

Progress: a tqdm bar at a terminal; in a pod or any log file (stderr is no terminal) a bar's carriage returns are
noise, so a line every LOG_EVERY steps says how far the epoch is, with loss, lr, img/s and its ETA (timm's
`--log-interval`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
from collections.abc import Callable, Iterator

import torch
from tqdm import tqdm

from finegrain.metrics import accuracy, log_loss, softmax, tempered_log_loss
from finegrain.training.build import TrainSetup
from finegrain.training.loop import predict, train_one_epoch
from finegrain.training.runtime import derived_seed

LOSS_EVERY = 20  # steps between loss readouts on the bar: reading the loss syncs the GPU
LOG_EVERY = 50  # steps between progress lines when stderr is no terminal


def run_epoch(setup: TrainSetup, epoch: int) -> dict:
    """Train and evaluate `epoch`; returns its record (also appended to the history and printed as JSON)."""
    tc, data, t = setup.cfg.train, setup.data, setup.training
    data.train_loader.sampler.set_epoch(epoch)
    torch.manual_seed(derived_seed(tc.seed, epoch, "torch"))  # dropout/drop-path: f(seed, epoch)
    in_swa = t.in_swa(epoch)
    if in_swa and t.swa_scheduler is None:
        t.start_swa_schedule()
    with epoch_progress(setup, epoch) as progress:
        stats = train_one_epoch(
            t.model, t.embed, t.loss_fn, t.optimizer, None if in_swa else t.scheduler, data.train_loader,
            data.prepare, amp=tc.amp, grad_clip=tc.grad_clip, mix=t.mix,
            mix_generator=torch.Generator().manual_seed(derived_seed(tc.seed, epoch, "mix")),
            max_steps=tc.max_steps_per_epoch, ema=t.ema_model, progress=progress,
        )  # fmt: skip
    if in_swa:
        t.swa_model.update_parameters(t.model)
        t.swa_scheduler.step()
    t.global_step += stats["steps"]
    watched = t.ema_model.module if t.ema_model is not None else t.model
    val_logits, _ = predict(watched, data.val_loader, data.prepare, amp=tc.amp)
    val_labels = data.val_rows["class_index"].to_numpy()
    val_logloss, val_temperature = tempered_log_loss(val_labels, val_logits)
    record = {
        "epoch": epoch, "train_loss": stats["train_loss"], "lr": stats["lr"], "img_per_s": stats["img_per_s"],
        "train_images": stats["images"], "train_seconds": stats["seconds"],
        # headline after one temperature fitted on these rows; the raw softmax beside it (docs/design.md)
        "val_logloss": val_logloss, "val_logloss_raw": log_loss(val_labels, softmax(val_logits)),
        "val_temperature": val_temperature, "val_accuracy": accuracy(val_labels, val_logits),
    }  # fmt: skip
    t.history.append(record)
    print(json.dumps(record))
    return record


def show_progress(bar: tqdm, step: int, loss: torch.Tensor) -> None:
    """`train_one_epoch`'s progress callback: advance the bar, and show the loss every LOSS_EVERY steps."""
    bar.update(1)
    if step % LOSS_EVERY == 0:
        bar.set_postfix(loss=f"{float(loss):.3f}")


@contextlib.contextmanager
def epoch_progress(setup: TrainSetup, epoch: int) -> Iterator[Callable[[int, torch.Tensor], None]]:
    """`train_one_epoch`'s progress callback for this epoch: a bar at a terminal, else StepLog lines."""
    total, desc = setup.training.steps_per_epoch, f"{setup.label} epoch {epoch + 1}/{setup.cfg.train.epochs}"
    if sys.stderr.isatty():
        with tqdm(total=total, desc=desc, leave=False) as bar:
            yield functools.partial(show_progress, bar)
    else:
        yield StepLog(desc, total, setup.batch_size, setup.training.optimizer)


class StepLog:
    """Progress as a line every `every` steps (`<member> epoch 2/6 step 50/400 (12%): loss 1.2345, lr 1.00e-03,
    85.3 img/s, ETA 4m05s`); the loss is read (a GPU sync) only on those steps."""

    def __init__(self, desc: str, total: int, batch_size: int, optimizer, every: int = LOG_EVERY, out=None) -> None:
        self.desc, self.total, self.batch_size, self.optimizer, self.every = desc, total, batch_size, optimizer, every
        self.out = out or sys.stdout
        self.started = time.perf_counter()

    def __call__(self, step: int, loss: torch.Tensor) -> None:
        if step % self.every:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        left = max(self.total - step, 0) * elapsed / step
        print(
            f"{self.desc} step {step}/{self.total} ({step / max(self.total, 1):.0%}): loss {float(loss):.4f}, "
            f"lr {self.optimizer.param_groups[0]['lr']:.2e}, {step * self.batch_size / elapsed:.1f} img/s, "
            f"ETA {int(left) // 60}m{int(left) % 60:02d}s",
            file=self.out, flush=True,
        )  # fmt: skip
