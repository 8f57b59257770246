"""`FineGrainModel`: timm backbone -> our pooling (avg | GeM) -> embedding neck (Linear + BatchNorm1d) -> head.

Same small surface as a timm model: `embed(x)` (the [B, D] embedding used by regroup/t-SNE), `head(emb, labels)`
and `forward(x, labels)`. `build_model(spec, head_cfg, num_classes)` is the one entry point.
"""

from __future__ import annotations

import logging

import timm
import torch
from timm.data import resolve_data_config
from torch import nn

from finegrain.config import BackboneSpec, HeadConfig
from finegrain.models.heads import MARGIN_HEADS, build_head
from finegrain.models.pooling import build_pooling
from finegrain.models.weights import load_pretrained

log = logging.getLogger(__name__)


class FineGrainModel(nn.Module):
    """Backbone features -> pooling -> neck -> head; see the module docstring."""

    def __init__(
        self, backbone: nn.Module, backbone_name: str, head_cfg: HeadConfig, num_classes: int
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.backbone_name = backbone_name
        self.num_classes = num_classes
        self.embedding_dim = head_cfg.embedding_dim
        self.head_name = head_cfg.name
        # head_hidden_size: what a headless timm model actually outputs (mobilenetv3's conv_head widens it).
        self.feature_dim = int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)
        # Known statically, so forward has no data-dependent branches (torch.compile-friendly).
        self.channels_last_output = getattr(backbone, "output_fmt", "NCHW") == "NHWC"
        self.pool = build_pooling(head_cfg.pooling)
        self.neck = nn.Sequential(
            nn.Linear(self.feature_dim, self.embedding_dim, bias=False), nn.BatchNorm1d(self.embedding_dim)
        )
        self.head = build_head(head_cfg, num_classes)
        self.pretrained_report: dict = {"source": "random", "n_tensors": 0, "skipped": []}

    @property
    def data_config(self) -> dict:
        """mean, std, input_size, interpolation, crop_pct of the backbone's weights (timm's resolve_data_config)."""
        return resolve_data_config({}, model=self.backbone)

    @property
    def uses_margin(self) -> bool:
        """True for heads whose training forward needs the labels (ArcFace, AdaFace)."""
        return self.head_name in MARGIN_HEADS

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone output as an NCHW map (transformer tokens [B, N, C] become [B, C, N, 1])."""
        feats = self.backbone(x)
        if feats.ndim == 3:
            return feats.transpose(1, 2).unsqueeze(-1)
        if self.channels_last_output:
            return feats.permute(0, 3, 1, 2)
        return feats

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[B, D] embedding (neck output, not normalised: margin heads use its norm as a quality signal)."""
        return self.neck(self.pool(self.features(x)))

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None, update_stats: bool = True
    ) -> torch.Tensor:
        """Logits [B, C] (float32). Margin heads need `labels` in training mode; see heads.py."""
        return self.head(self.embed(x), labels, update_stats)

    def param_groups(self, lr: float, weight_decay: float, backbone_lr_scale: float = 1.0) -> list[dict]:
        """AdamW/SGD parameter groups: no weight decay on norms, biases and GeM's p; the backbone may get a
        lower learning rate (`backbone_lr_scale`) than the freshly initialised pooling/neck/head."""
        groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            part = "backbone" if name.startswith("backbone.") else "head"
            decay = param.ndim > 1  # 1-D tensors are norm scales/shifts, biases and GeM's exponent
            groups.setdefault((part, decay), []).append(param)
        out = []
        for (part, decay), params in sorted(groups.items()):
            out.append(
                {
                    "name": f"{part}{'' if decay else '_no_decay'}",
                    "params": params,
                    "lr": lr * (backbone_lr_scale if part == "backbone" else 1.0),
                    "weight_decay": weight_decay if decay else 0.0,
                }
            )
        return out


def create_backbone(name: str) -> nn.Module:
    """A headless, unpooled timm backbone (random init; weights come from `load_pretrained`)."""
    try:
        return timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
    except RuntimeError as exc:  # timm's "Unknown model (...)"
        raise ValueError(f"backbone {name!r}: {exc}; see timm.list_models()") from None


def build_model(spec: BackboneSpec, head: HeadConfig, num_classes: int) -> FineGrainModel:
    """The classifier for one backbone spec: timm backbone with `spec.pretrained` weights, pooling, neck, head."""
    if num_classes < 2:
        raise ValueError(f"build_model: num_classes must be at least 2, got {num_classes}")
    backbone = create_backbone(spec.name)
    report = load_pretrained(backbone, spec.pretrained, spec.name)
    log.info("backbone %s: %s (%d tensors)", spec.name, report["source"], report["n_tensors"])
    model = FineGrainModel(backbone, spec.name, head, num_classes)
    model.pretrained_report = report
    return model
