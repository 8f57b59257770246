"""build_training: the backbone's learning-rate scale, the linear-probe warm-up (LP-FT) and SWA per group; the
threads a member trained on CPU gets."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from finegrain.config import BackboneSpec, HeadConfig, TrainConfig
from finegrain.models import build_model
from finegrain.training.build import build_training
from finegrain.training.runtime import cpu_threads

BATCHES = 4  # per epoch


def _setup(**train):
    torch.manual_seed(0)
    model = build_model(BackboneSpec(name="test_convnext"), HeadConfig(name="linear", embedding_dim=8), 3)
    tc = TrainConfig(epochs=3, warmup_epochs=0, swa={"enabled": False}, **train)
    return model, build_training(tc, model, F.cross_entropy, lr=1e-2, train_batches=BATCHES)


def _steps(model, training, n: int) -> None:
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    for _ in range(n):
        loss = training.loss_fn(model(x, y), y)
        training.optimizer.zero_grad()
        loss.backward()
        training.optimizer.step()
        training.scheduler.step()


def _params(model, prefix: str) -> list[torch.Tensor]:
    return [p.detach().clone() for n, p in model.named_parameters() if n.startswith(prefix)]


def _moved(before, model, prefix: str) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, _params(model, prefix)))


def test_backbone_groups_learn_at_the_scaled_rate() -> None:
    _, training = _setup(backbone_lr_scale=0.1)
    lrs = {g["name"]: g["lr"] for g in training.optimizer.param_groups}
    assert lrs["backbone"] == pytest.approx(1e-3) and lrs["backbone_no_decay"] == pytest.approx(1e-3)
    assert lrs["head"] == pytest.approx(1e-2) and lrs["head_no_decay"] == pytest.approx(1e-2)


def test_linear_probe_holds_the_backbone_still_then_fine_tunes_it() -> None:
    model, training = _setup(linear_probe_epochs=1)
    backbone, head = _params(model, "backbone."), _params(model, "head.")
    _steps(model, training, BATCHES)  # the probe epoch
    assert not _moved(backbone, model, "backbone."), "the backbone moved during the linear probe"
    assert _moved(head, model, "head.")
    _steps(model, training, 2)
    assert _moved(backbone, model, "backbone."), "the backbone never started fine-tuning"


def test_without_a_probe_the_backbone_moves_from_the_first_step() -> None:
    model, training = _setup()
    backbone = _params(model, "backbone.")
    _steps(model, training, 1)
    assert _moved(backbone, model, "backbone.")


def test_swa_keeps_the_backbone_scale() -> None:
    torch.manual_seed(0)
    model = build_model(BackboneSpec(name="test_convnext"), HeadConfig(name="linear", embedding_dim=8), 3)
    tc = TrainConfig(epochs=4, backbone_lr_scale=0.25, swa={"enabled": True, "lr": 4e-4})
    training = build_training(tc, model, F.cross_entropy, lr=1e-2, train_batches=BATCHES)
    training.start_swa_schedule()
    swa = {g["name"]: g["swa_lr"] for g in training.optimizer.param_groups}
    assert swa["head"] == pytest.approx(4e-4) and swa["backbone"] == pytest.approx(1e-4)


def test_cpu_members_share_the_cores_without_oversubscribing() -> None:
    cores = len(os.sched_getaffinity(0))
    assert cpu_threads(1) == cores
    assert cpu_threads(2) == max(1, cores // 2)
    assert cpu_threads(cores * 4) == 1  # never 0: every member gets a thread
