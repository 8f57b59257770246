"""Global pooling of backbone feature maps: plain average or GeM (generalised mean) with a learnable exponent.

GeM (Radenovic et al., 2018) sits between average (p=1) and max pooling (p -> inf); for fine-grained classes it
lets the network emphasise the few discriminative regions (a grille, a tail light) over the background.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AvgPool(nn.Module):
    """Average over the spatial dims of an NCHW map -> [B, C]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class GeM(nn.Module):
    """Generalised-mean pooling over an NCHW map -> [B, C]; `p` is learned (initialised at 3)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * p)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x**p in bf16 loses most of its mantissa for p~3; do the power mean in float32.
        p = self.p.float()
        pooled = F.adaptive_avg_pool2d(x.float().clamp(min=self.eps).pow(p), 1).pow(1.0 / p)
        return pooled.flatten(1).to(x.dtype)

    def extra_repr(self) -> str:
        return f"p={float(self.p.detach()):.3f}, eps={self.eps}"


POOLINGS = {"avg": AvgPool, "gem": GeM}


def build_pooling(name: str) -> nn.Module:
    """Pooling layer by name (`avg` or `gem`)."""
    if name not in POOLINGS:
        raise ValueError(f"unknown pooling {name!r}; choose one of {sorted(POOLINGS)}")
    return POOLINGS[name]()
