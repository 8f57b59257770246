"""The train progress callback: the bar moves every step, the loss is read (a GPU sync) only every LOSS_EVERY."""

from __future__ import annotations

import torch

from finegrain.training.epoch import LOSS_EVERY, show_progress


class FakeBar:
    def __init__(self) -> None:
        self.n, self.postfixes = 0, []

    def update(self, n: int) -> None:
        self.n += n

    def set_postfix(self, **kwargs) -> None:
        self.postfixes.append(kwargs)


def test_show_progress_advances_every_step_and_shows_the_loss_every_loss_every_steps():
    bar = FakeBar()
    for step in range(1, 2 * LOSS_EVERY + 2):
        show_progress(bar, step, torch.tensor(0.5 + step))
    assert bar.n == 2 * LOSS_EVERY + 1
    assert bar.postfixes == [{"loss": f"{0.5 + LOSS_EVERY:.3f}"}, {"loss": f"{0.5 + 2 * LOSS_EVERY:.3f}"}]
