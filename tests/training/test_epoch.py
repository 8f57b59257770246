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


def test_step_log_prints_a_line_every_n_steps_with_loss_lr_speed_and_eta():
    """In a pod (no terminal) progress is a log line every N steps, not a bar's carriage returns."""
    import io
    import re

    from finegrain.training.epoch import StepLog

    class Optimizer:
        param_groups = [{"lr": 0.002}]

    out = io.StringIO()
    log = StepLog("convnext/fold0 epoch 2/6", total=120, batch_size=32, optimizer=Optimizer(), every=50, out=out)
    for step in range(1, 121):
        log(step, torch.tensor(1.0 / step))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in out.getvalue()
    pattern = r"convnext/fold0 epoch 2/6 step (\d+)/120 \(\d+%\): loss ([\d.]+), lr 2\.00e-03, [\d.]+ img/s, ETA \d+m\d\ds"
    assert [re.fullmatch(pattern, line).groups() for line in lines] == [("50", "0.0200"), ("100", "0.0100")]
