"""Augmentation presets (albumentations on uint8 HWC arrays) and the on-device normaliser.

Two small classes, as in torchvision's references: `TrainPreset` (random-resized crop, flip, light colour
and geometry jitter) and `EvalPreset` (deterministic resize) -- validation AND test always use `EvalPreset`.
Mean/std come from the backbone's own pretrained config (`model.data_config`), never retyped.

By default the presets stop at a uint8 CHW tensor and `DeviceNormalizer` turns the batch into normalised
floats on the GPU: 4x fewer bytes over PCIe and no float maths on the host cores that feed the GPU.
`normalize=True` puts `A.Normalize` in the preset instead (float32 output), for callers without a device step.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from albumentations.pytorch import ToTensorV2

TTA_VIEWS = ("identity", "hflip", "vflip", "center_crop_90")


def _finish(mean: Sequence[float], std: Sequence[float], normalize: bool) -> list:
    if normalize:
        return [A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0), ToTensorV2()]
    return [ToTensorV2()]


class TrainPreset:
    """Training augmentation: crop/scale/aspect jitter, horizontal flip, light colour and affine jitter."""

    def __init__(
        self,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        normalize: bool = False,
        scale: tuple[float, float] = (0.35, 1.0),
    ) -> None:
        self.transform = A.Compose(
            [
                # ratio reaches 4:3 both ways so a whole 600x450 photo (the Hecto shape) is a possible crop.
                A.RandomResizedCrop(size=(image_size, image_size), scale=scale, ratio=(0.75, 1.3333)),
                A.HorizontalFlip(p=0.5),
                A.Affine(rotate=(-10, 10), translate_percent=(-0.05, 0.05), border_mode=cv2.BORDER_REFLECT_101, p=0.3),
                A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
                A.HueSaturationValue(hue_shift_limit=5, sat_shift_limit=15, val_shift_limit=10, p=0.3),
                *_finish(mean, std, normalize),
            ]
        )

    def set_seed(self, seed: int) -> None:
        """Make the next call's random choices a function of `seed` (so a resumed run repeats them)."""
        self.transform.set_random_seed(seed)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return self.transform(image=image)["image"]


class EvalPreset:
    """Deterministic evaluation transform: short side to image_size + centre crop, or a plain (squash) resize."""

    def __init__(
        self,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        normalize: bool = False,
        resize: Literal["center_crop", "squash"] = "center_crop",
    ) -> None:
        if resize == "center_crop":
            geometry = [
                A.SmallestMaxSize(max_size=image_size, interpolation=cv2.INTER_AREA),
                A.CenterCrop(height=image_size, width=image_size),
            ]
        elif resize == "squash":
            geometry = [A.Resize(height=image_size, width=image_size, interpolation=cv2.INTER_AREA)]
        else:
            raise ValueError(f"EvalPreset: resize={resize!r}; choose one of ['center_crop', 'squash']")
        self.transform = A.Compose([*geometry, *_finish(mean, std, normalize)])

    def set_seed(self, seed: int) -> None:  # deterministic; kept so both presets share one interface
        self.transform.set_random_seed(seed)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return self.transform(image=image)["image"]


class DeviceNormalizer:
    """uint8 [B,3,H,W] batch -> normalised float on `device` (optionally channels_last)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device, channels_last: bool) -> None:
        self.device = torch.device(device)
        self.mean = torch.tensor([m * 255.0 for m in mean], device=self.device).view(1, -1, 1, 1)
        self.inv_std = torch.tensor([1.0 / (s * 255.0) for s in std], device=self.device).view(1, -1, 1, 1)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True)
        if x.dtype == torch.uint8:
            x = (x.float() - self.mean) * self.inv_std
        return x.contiguous(memory_format=self.memory_format)


def tta_view(x: torch.Tensor, view: str) -> torch.Tensor:
    """One test-time view of a (normalised) batch: identity, hflip, vflip or the central 90% resized back."""
    if view == "identity":
        return x
    if view == "hflip":
        return x.flip(-1)
    if view == "vflip":
        return x.flip(-2)
    if view == "center_crop_90":
        h, w = x.shape[-2:]
        ch, cw = max(1, round(h * 0.9)), max(1, round(w * 0.9))
        top, left = (h - ch) // 2, (w - cw) // 2
        crop = x[..., top : top + ch, left : left + cw]
        return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
    raise ValueError(f"unknown TTA view {view!r}; choose from {list(TTA_VIEWS)}")
