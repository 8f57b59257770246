"""Training loss: `ce_weight * CrossEntropy(label_smoothing) + focal_weight * Focal(gamma)`.

Label smoothing applies to the CE part only; the focal term uses the hard target (smoothing a focal loss
double-discounts easy examples). Everything is computed in float32 from log_softmax, so bf16 logits and
large margin-head scales (s=64) stay numerically stable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from finegrain.config import LossConfig


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """Mean focal loss -(1 - p_t)^gamma * log p_t (Lin et al., 2017) on integer targets."""
    log_p = F.log_softmax(logits.float(), dim=1)
    log_pt = log_p.gather(1, target.long().unsqueeze(1)).squeeze(1)
    # (1 - p_t) from log_pt: -expm1 keeps precision when p_t is close to 1.
    weight = (-torch.expm1(log_pt)).clamp_min(0).pow(gamma)
    return -(weight * log_pt).mean()


class CeFocalLoss(nn.Module):
    """Weighted sum of label-smoothed cross entropy and focal loss; `loss(logits [B, C], target [B])`."""

    def __init__(
        self,
        ce_weight: float = 1.0,
        focal_weight: float = 1.0,
        gamma: float = 2.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if ce_weight == 0 and focal_weight == 0:
            raise ValueError("loss: ce_weight and focal_weight are both 0, nothing would be trained")
        self.ce_weight = ce_weight
        self.focal_weight = focal_weight
        self.gamma = gamma
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        loss = logits.new_zeros(())
        if self.ce_weight:
            ce = F.cross_entropy(logits, target.long(), label_smoothing=self.label_smoothing)
            loss = loss + self.ce_weight * ce
        if self.focal_weight:
            loss = loss + self.focal_weight * focal_loss(logits, target, self.gamma)
        return loss

    def extra_repr(self) -> str:
        return (
            f"ce_weight={self.ce_weight}, focal_weight={self.focal_weight}, gamma={self.gamma}, "
            f"label_smoothing={self.label_smoothing}"
        )


def build_loss(cfg: LossConfig) -> nn.Module:
    """The training loss described by `train.loss`."""
    return CeFocalLoss(cfg.ce_weight, cfg.focal_weight, cfg.focal_gamma, cfg.label_smoothing)
