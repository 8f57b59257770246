"""Weight averaging done right: SWA (AveragedModel + SWALR, then BN statistics recomputed) or an EMA.

Rules this module exists to enforce (the public Hecto solution broke both): the per-step base scheduler stops
stepping once SWALR takes over, and the averaged weights are the ones evaluated, TTA-predicted and saved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def swa_start_epoch(epochs: int, start_epoch: int) -> int:
    """First epoch whose end weights enter the average; 0 in the config means the last quarter of training."""
    if start_epoch == 0:
        return epochs - max(1, epochs // 4)
    if start_epoch >= epochs:
        raise ValueError(f"train.swa.start_epoch={start_epoch} must be below train.epochs={epochs}")
    return start_epoch


def make_swa(model: nn.Module) -> AveragedModel:
    # Parameters only: BN running stats of averaged weights are recomputed by `recompute_bn_stats` at the end.
    return AveragedModel(model, use_buffers=False)


def make_ema(model: nn.Module, decay: float) -> AveragedModel:
    # use_buffers=True averages BN stats with the weights, so the EMA model is usable without a BN pass.
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def copy_non_bn_buffers(src: nn.Module, dst: nn.Module) -> None:
    """Carry buffers that are not BN statistics (e.g. AdaFace's feature-norm EMA) from the live model."""
    bn_prefixes = tuple(
        f"{name}." for name, m in dst.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    )
    dst_buffers = dict(dst.named_buffers())
    for name, buf in src.named_buffers():
        if name in dst_buffers and not name.startswith(bn_prefixes):
            dst_buffers[name].copy_(buf)


@torch.no_grad()
def recompute_bn_stats(
    model: nn.Module,
    batches: Iterable,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    embed: Callable[[torch.Tensor], torch.Tensor] | None = None,
    max_steps: int | None = None,
) -> int:
    """`torch.optim.swa_utils.update_bn`, for our loaders: batches are uint8 `(images, labels)` to `prepare`
    on the device, and only the backbone runs (BN lives there; a margin head would want labels in train mode).
    Returns the number of batches seen (0 when the model has no BatchNorm)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    momenta = {m: m.momentum for m in bns}
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the whole pass, as update_bn does
    was_training = model.training
    model.train()
    embed = embed or model.embed
    seen = 0
    try:
        for images, _ in batches:
            if max_steps is not None and seen >= max_steps:
                break
            embed(prepare(images))
            seen += 1
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        model.train(was_training)
    return seen
