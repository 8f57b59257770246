"""recompute_bn_stats: the BatchNorm pass after SWA gives the data's statistics."""

from __future__ import annotations

import torch
from torch import nn

from finegrain.training.swa import recompute_bn_stats


def test_recompute_bn_stats_matches_the_data():
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm2d(3)

        def embed(self, x):
            return self.bn(x)

    model = Tiny()
    data = [torch.randn(6, 3, 4, 4) * 2 + 5 for _ in range(3)]
    seen = recompute_bn_stats(model, [(x, None) for x in data], prepare=lambda x: x)
    assert seen == 3
    torch.testing.assert_close(model.bn.running_mean, torch.cat(data).mean(dim=(0, 2, 3)), atol=1e-4, rtol=1e-4)
