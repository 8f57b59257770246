"""The `train` section of the config: backbones, head, loss, mixing, SWA and the optimisation settings."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from finegrain.config.base import ConfigError, _Section


class BackboneSpec(_Section):
    name: str
    # True (timm hub), False (random init), a local/S3 path to a state dict, or "package:efficientnet_lite0".
    pretrained: Union[bool, str] = False
    image_size: int | None = None
    batch_size: int | None = None
    lr: float | None = None


class HeadConfig(_Section):
    name: Literal["linear", "arcface", "adaface"] = "adaface"
    embedding_dim: int = Field(512, gt=0)
    pooling: Literal["avg", "gem"] = "gem"
    scale: float = 64.0
    margin: float = 0.4
    h: float = 0.333  # AdaFace: how strongly the margin adapts to the feature norm
    t_alpha: float = 0.01  # AdaFace: EMA rate of the batch norm statistics


class LossConfig(_Section):
    ce_weight: float = Field(1.0, ge=0.0)
    focal_weight: float = Field(1.0, ge=0.0)
    focal_gamma: float = Field(2.0, ge=0.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)


class MixConfig(_Section):
    mixup_alpha: float = Field(0.0, ge=0.0)
    cutmix_alpha: float = Field(0.0, ge=0.0)
    prob: float = Field(0.0, ge=0.0, le=1.0)


class SwaConfig(_Section):
    enabled: bool = True
    start_epoch: int = Field(0, ge=0)  # 0 = the last quarter of training
    lr: float = Field(1e-4, gt=0.0)
    anneal_epochs: int = Field(1, ge=1)


class TrainConfig(_Section):
    backbones: list[BackboneSpec] = Field(
        default_factory=lambda: [BackboneSpec(name="efficientnet_lite0", pretrained="package:efficientnet_lite0")]
    )
    epochs: int = Field(3, ge=1)
    image_size: int = Field(128, ge=16)
    # Training crops cover this fraction of the photo's area (RandomResizedCrop); a small, centred subject (a
    # product shot) loses itself in the low end, a large photo with a small object needs it.
    crop_scale: tuple[float, float] = (0.35, 1.0)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.05, ge=0.0)
    warmup_epochs: float = Field(0.5, ge=0.0)
    # The pretrained backbone learns at lr x this, the freshly initialised pooling/neck/head at lr: on a few
    # hundred images a full-rate backbone forgets its ImageNet features before the head has settled.
    backbone_lr_scale: float = Field(1.0, gt=0.0, le=1.0)
    # Linear-probe warm-up (LP-FT): for this many epochs the backbone's learning rate is 0 and only
    # pooling/neck/head learn (its BatchNorm statistics still follow the data); then everything fine-tunes,
    # the backbone from a warm-up and cosine of its own. 0 = fine-tune from the first step.
    linear_probe_epochs: float = Field(0.0, ge=0.0)
    grad_clip: float = Field(1.0, ge=0.0)  # 0 disables
    head: HeadConfig = Field(default_factory=HeadConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    mix: MixConfig = Field(default_factory=MixConfig)
    swa: SwaConfig = Field(default_factory=SwaConfig)
    ema: bool = False
    ema_decay: float = Field(0.999, gt=0.0, lt=1.0)
    tta: list[Literal["identity", "hflip", "vflip", "center_crop_90"]] = Field(
        default_factory=lambda: ["identity", "hflip"]
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # bf16 autocast on CUDA only
    channels_last: bool = True
    compile: bool = False
    num_workers: int = Field(2, ge=0)
    # Images are decoded once and cached at this size (x image_size) so the GPU is never starved by JPEG decode.
    cache_scale: float = Field(1.15, ge=1.0)
    cache_dir: str | None = None  # local scratch for the decoded-image cache; None = $FINEGRAIN_CACHE_DIR or temp
    # Validation/test resize: short side + centre crop, or a squash of the whole photo to a square.
    eval_resize: Literal["center_crop", "squash"] = "center_crop"
    # model.pt goes to the member's MLflow run only below this size, and only when no model is registered
    # (tracking.register_model empty): otherwise the registered model holds the one MLflow copy.
    log_model_max_mb: float = Field(200.0, ge=0.0)
    max_steps_per_epoch: int | None = None  # for smoke tests
    seed: int = 0
    deterministic: bool = True

    def backbone(self, name: str) -> BackboneSpec:
        for spec in self.backbones:
            if spec.name == name:
                return spec
        raise ConfigError(
            f"train.backbones: no backbone named {name!r}; choose one of {[b.name for b in self.backbones]}"
        )

    @field_validator("backbones", mode="before")
    @classmethod
    def _names_to_specs(cls, value: Any) -> Any:
        # Accept plain names (`--set train.backbones=[convnext_tiny]`) as well as full specs.
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("crop_scale")
    @classmethod
    def _crop_scale_in_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0.0 < low <= high <= 1.0:
            raise ValueError("crop_scale must be (low, high) with 0 < low <= high <= 1")
        return value

    @model_validator(mode="after")
    def _probe_ends_before_fine_tuning(self) -> "TrainConfig":
        if self.linear_probe_epochs >= self.epochs:
            raise ValueError(
                f"train.linear_probe_epochs={self.linear_probe_epochs} must be below train.epochs={self.epochs} "
                "(the backbone would never fine-tune)"
            )
        return self
