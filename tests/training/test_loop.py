"""train_one_epoch hands the labels to the head, also for mixed (MixUp/CutMix) batches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from finegrain.data.transforms import DeviceNormalizer
from finegrain.training.loop import train_one_epoch


class SpyModel(nn.Module):
    """Records the labels the loop hands to the head (a margin head needs them in training)."""

    def __init__(self) -> None:
        super().__init__()
        self.body, self.fc, self.calls, self.updates = nn.Linear(3, 4), nn.Linear(4, 3), [], []

    def embed(self, x):
        return self.body(x.mean(dim=(2, 3)))

    def head(self, emb, labels=None, update_stats=True):
        self.calls.append(None if labels is None else labels.clone())
        self.updates.append(update_stats)
        return self.fc(emb)


@pytest.mark.parametrize("mix", [None, {"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "prob": 1.0}])
def test_loop_passes_labels_to_the_head_also_when_mixing(mix):
    model = SpyModel()
    y = torch.tensor([0, 1, 2, 0])
    batches = [(torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8), y)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    prepare = DeviceNormalizer((0.5,) * 3, (0.25,) * 3, torch.device("cpu"), channels_last=False)
    stats = train_one_epoch(
        model, model.embed, nn.functional.cross_entropy, opt, None, batches, prepare, amp=False, grad_clip=1.0,
        mix=mix, mix_generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert stats["steps"] == 1 and all(c is not None for c in model.calls)
    assert torch.equal(model.calls[0], y)
    if mix:  # the head scores both label sets of the mixed batch, each with its margin
        assert len(model.calls) == 2 and sorted(model.calls[1].tolist()) == sorted(y.tolist())
        assert model.updates == [True, False], "margin statistics must be updated once per batch"
