"""CE + focal loss: hand-computed values, label smoothing on the CE part only, weights, bf16 and stability."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from finegrain.config import LossConfig
from finegrain.models import build_loss, focal_loss

LOGITS = [[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]]
TARGET = [0, 2]


def _hand_loss(gamma: float, smoothing: float, ce_w: float, focal_w: float) -> float:
    total = 0.0
    for row, t in zip(LOGITS, TARGET):
        z = sum(math.exp(v) for v in row)
        logp = [v - math.log(z) for v in row]
        k = len(row)
        # smoothed target: 1 - eps on the label, eps / K spread over all classes (torch's definition)
        soft = [smoothing / k + (1 - smoothing) * (i == t) for i in range(k)]
        ce = -sum(q * lp for q, lp in zip(soft, logp))
        pt = math.exp(logp[t])
        focal = -((1 - pt) ** gamma) * logp[t]
        total += ce_w * ce + focal_w * focal
    return total / len(LOGITS)


@pytest.mark.parametrize(
    "gamma,smoothing,ce_w,focal_w",
    [
        (2.0, 0.0, 1.0, 1.0),
        (2.0, 0.1, 1.0, 1.0),
        (1.5, 0.2, 0.5, 2.0),
        (2.0, 0.0, 0.0, 1.0),
        (0.0, 0.0, 1.0, 0.0),
    ],
)
def test_loss_matches_hand_computation(gamma: float, smoothing: float, ce_w: float, focal_w: float) -> None:
    cfg = LossConfig(ce_weight=ce_w, focal_weight=focal_w, focal_gamma=gamma, label_smoothing=smoothing)
    got = build_loss(cfg)(torch.tensor(LOGITS), torch.tensor(TARGET))
    assert got.item() == pytest.approx(_hand_loss(gamma, smoothing, ce_w, focal_w), rel=1e-5)


def test_label_smoothing_changes_only_the_ce_part() -> None:
    logits, target = torch.tensor(LOGITS), torch.tensor(TARGET)
    focal_only = LossConfig(ce_weight=0.0, focal_weight=1.0)
    plain = build_loss(focal_only)(logits, target)
    smoothed = build_loss(focal_only.model_copy(update={"label_smoothing": 0.3}))(logits, target)
    assert smoothed.item() == pytest.approx(plain.item())  # focal uses hard targets
    ce_cfg = LossConfig(ce_weight=1.0, focal_weight=0.0, label_smoothing=0.3)
    assert build_loss(ce_cfg)(logits, target).item() == pytest.approx(
        F.cross_entropy(logits, target, label_smoothing=0.3).item()
    )
    assert build_loss(ce_cfg)(logits, target).item() != pytest.approx(F.cross_entropy(logits, target).item())


def test_focal_with_gamma_zero_is_cross_entropy() -> None:
    logits, target = torch.randn(16, 7), torch.randint(0, 7, (16,))
    assert focal_loss(logits, target, 0.0).item() == pytest.approx(
        F.cross_entropy(logits, target).item(), rel=1e-6
    )


def test_bf16_logits_give_a_float32_loss() -> None:
    logits = (torch.randn(8, 396) * 20).bfloat16()
    target = torch.randint(0, 396, (8,))
    loss = build_loss(LossConfig())(logits, target)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(build_loss(LossConfig())(logits.float(), target).item(), rel=1e-6)


def test_stable_for_margin_head_scale_logits() -> None:
    # s=64 cosine logits: a confident correct row (p_t -> 1) and a confidently wrong one (p_t -> 0).
    logits = torch.tensor([[64.0, -64.0, -64.0], [-64.0, 64.0, -64.0]], requires_grad=True)
    loss = build_loss(LossConfig(label_smoothing=0.1))(logits, torch.tensor([0, 0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert loss.item() > 64  # the wrong row costs ~128 nats of CE (+ the same in focal), halved by the mean


def test_all_zero_weights_is_an_error() -> None:
    with pytest.raises(ValueError, match="both 0"):
        build_loss(LossConfig(ce_weight=0.0, focal_weight=0.0))
