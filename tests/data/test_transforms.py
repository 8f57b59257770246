"""Augmentation presets, the on-device normaliser and TTA views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finegrain.data.transforms import DeviceNormalizer, EvalPreset, TrainPreset, tta_view

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture
def photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(69, 92, 3), dtype=np.uint8)  # 4:3 like a Hecto photo, cached size


def test_train_preset_shape_dtype_and_seeded_randomness(photo):
    preset = TrainPreset(48, MEAN, STD)
    preset.set_seed(7)
    a = preset(photo)
    preset.set_seed(7)
    b = preset(photo)
    preset.set_seed(8)
    c = preset(photo)
    assert a.shape == (3, 48, 48) and a.dtype == torch.uint8
    assert torch.equal(a, b), "same seed must give the same augmentation (resume depends on it)"
    assert not torch.equal(a, c)


def test_eval_preset_is_deterministic_and_resizes(photo):
    crop = EvalPreset(48, MEAN, STD, resize="center_crop")
    squash = EvalPreset(48, MEAN, STD, resize="squash")
    assert crop(photo).shape == squash(photo).shape == (3, 48, 48)
    assert torch.equal(crop(photo), crop(photo))
    assert not torch.equal(crop(photo), squash(photo))
    with pytest.raises(ValueError, match="resize"):
        EvalPreset(48, MEAN, STD, resize="stretch")


def test_device_normalizer_matches_albumentations_normalize(photo):
    host = EvalPreset(48, MEAN, STD, normalize=True)(photo)
    dev = DeviceNormalizer(MEAN, STD, torch.device("cpu"), channels_last=True)(EvalPreset(48, MEAN, STD)(photo)[None])
    assert host.dtype == torch.float32
    assert dev.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(dev[0], host, atol=1e-5, rtol=1e-5)


def test_normalisation_uses_the_given_statistics(photo):
    a = EvalPreset(48, MEAN, STD, normalize=True)(photo)
    b = EvalPreset(48, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), normalize=True)(photo)
    assert not torch.allclose(a, b)


def test_tta_views():
    x = torch.arange(2 * 3 * 10 * 10, dtype=torch.float32).view(2, 3, 10, 10)
    assert torch.equal(tta_view(x, "identity"), x)
    assert torch.equal(tta_view(x, "hflip")[..., 0], x[..., -1])
    assert torch.equal(tta_view(x, "vflip")[..., 0, :], x[..., -1, :])
    crop = tta_view(x, "center_crop_90")
    assert crop.shape == x.shape and not torch.equal(crop, x)
    with pytest.raises(ValueError, match="unknown TTA view"):
        tta_view(x, "rotate")
