"""One training epoch, evaluation and TTA prediction, plus the LR schedule and CutMix/MixUp.

The loop always runs `embed` then `head(emb, labels)`, so a margin head (ArcFace/AdaFace) gets its labels in
training, and a mixed batch is scored as lam * loss(head(emb, y_a), y_a) + (1 - lam) * loss(head(emb, y_b), y_b)
-- mixing never switches the margin off.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from finegrain.data.transforms import tta_view


def warmup_cosine(total_steps: int, warmup_steps: int, floor: float = 0.01) -> Callable[[int], float]:
    """LambdaLR factor: linear warm-up to 1, then cosine down to `floor` at `total_steps`."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def after_probe(probe_steps: int, then: Callable[[int], float]) -> Callable[[int], float]:
    """LambdaLR factor: 0 for the first `probe_steps` (a linear probe: that group does not move), then `then`
    counted from the end of the probe."""

    def factor(step: int) -> float:
        return 0.0 if step < probe_steps else then(step - probe_steps)

    return factor


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA; fp32 everywhere else (CPU bf16 is slow and changes numerics)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def mix_batch(
    x: torch.Tensor, y: torch.Tensor, mixup_alpha: float, cutmix_alpha: float, prob: float, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """CutMix or MixUp with probability `prob` (CutMix when both are on, chosen 50/50): (x, y_b, lam)."""
    if prob <= 0 or (mixup_alpha <= 0 and cutmix_alpha <= 0) or torch.rand((), generator=g).item() >= prob:
        return x, y, 1.0
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or torch.rand((), generator=g).item() < 0.5)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = _beta(alpha, g)
    perm = torch.randperm(x.shape[0], generator=g).to(x.device)
    if not use_cutmix:
        return x * lam + x[perm] * (1 - lam), y[perm], lam
    h, w = x.shape[-2:]
    cut = math.sqrt(1 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(torch.randint(h, (), generator=g)), int(torch.randint(w, (), generator=g))
    top, bottom = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    left, right = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    x = x.clone()
    x[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]
    lam = 1 - (bottom - top) * (right - left) / (h * w)  # the area actually pasted
    return x, y[perm], lam


def _beta(alpha: float, g: torch.Generator) -> float:
    # Beta(a, a) from two Gammas drawn with our generator (torch.distributions has no generator argument).
    a = torch._standard_gamma(torch.tensor([alpha, alpha], dtype=torch.float64), generator=g)
    return float(a[0] / a.sum())


def train_one_epoch(
    model: nn.Module,
    embed: Callable[[torch.Tensor], torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    loader,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    *,
    amp: bool,
    grad_clip: float,
    mix: dict,
    mix_generator: torch.Generator,
    max_steps: int | None = None,
    ema=None,
    progress: Callable[[int, torch.Tensor], None] | None = None,
) -> dict[str, float]:
    """Train for one pass (or `max_steps` batches); `scheduler` is stepped per batch when given."""
    model.train()
    device = next(model.parameters()).device
    total_loss, images, steps = torch.zeros((), device=device), 0, 0
    t0 = time.perf_counter()
    for images_u8, labels in loader:
        if max_steps is not None and steps >= max_steps:
            break
        x = prepare(images_u8)
        y = labels.to(device, non_blocking=True)
        x, y_b, lam = mix_batch(x, y, g=mix_generator, **mix) if mix else (x, y, 1.0)
        with autocast(device, amp):
            emb = embed(x)
            loss = loss_fn(model.head(emb, y).float(), y)
            if lam < 1.0:
                # update_stats=False: a margin head's running feature-norm statistics see each batch once.
                loss = lam * loss + (1 - lam) * loss_fn(model.head(emb, y_b, update_stats=False).float(), y_b)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        total_loss += loss.detach()
        images += x.shape[0]
        steps += 1
        if progress is not None:  # gets the loss tensor: reading its value syncs the GPU, so callers do it rarely
            progress(steps, loss.detach())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    if steps == 0:
        raise ValueError("training epoch saw no batches (empty training set?)")
    return {
        "train_loss": float(total_loss) / steps,
        "images": images,
        "steps": steps,
        "seconds": seconds,
        "img_per_s": images / max(seconds, 1e-9),
        "lr": optimizer.param_groups[0]["lr"],
    }


@torch.no_grad()
def predict(
    model: nn.Module,
    loader,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    *,
    amp: bool,
    views: Sequence[str] = ("identity",),
    embed: Callable[[torch.Tensor], torch.Tensor] | None = None,
    with_embeddings: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Eval-mode logits averaged over TTA `views` (and identity-view embeddings), in loader order."""
    model.eval()
    device = next(model.parameters()).device
    embed = embed or model.embed
    logits, embeddings = [], []
    for images_u8, _ in loader:
        x = prepare(images_u8)
        acc = None
        with autocast(device, amp):
            for view in views:
                emb = embed(tta_view(x, view))
                out = model.head(emb).float()
                acc = out if acc is None else acc + out
                if with_embeddings and view == views[0]:
                    embeddings.append(emb.float().cpu())
        logits.append((acc / len(views)).cpu())
    if not logits:
        raise ValueError("predict: the loader yielded no batches")
    return torch.cat(logits).numpy(), (torch.cat(embeddings).numpy() if with_embeddings else None)
