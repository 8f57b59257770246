"""Classifier heads on the embedding, chosen by name from `HEADS`: `linear`, `arcface`, `adaface`.

Every head is called as `head(emb, labels=None, update_stats=True) -> logits [B, C]` (float32).
The margin heads (ArcFace, AdaFace) add their margin to the TARGET logit only while training AND given labels;
at validation and inference they return plain `s * cos(theta)`, which is what the softmax/LogLoss is computed on.
A margin head in training mode with grad enabled and no labels raises: that silent mistake (training a margin
head without ever applying the margin) is exactly what a public solution to this competition shipped.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from finegrain.config import HeadConfig


class LinearHead(nn.Module):
    """Plain linear classifier (with bias): scale-free logits."""

    def __init__(self, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(embedding_dim, num_classes)

    def forward(
        self, emb: torch.Tensor, labels: torch.Tensor | None = None, update_stats: bool = True
    ) -> torch.Tensor:
        return self.fc(emb).float()


class _MarginHead(nn.Module):
    """Shared machinery: normalised class weights, cosine logits computed in float32."""

    eps = 1e-3  # keeps acos away from +-1 where its gradient is infinite (same value as AdaFace's head.py)

    def __init__(self, embedding_dim: int, num_classes: int, scale: float, margin: float) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.empty(num_classes, embedding_dim))
        # AdaFace's init: uniform, then every class vector rescaled to unit norm.
        self.kernel.data.uniform_(-1, 1).renorm_(2, 0, 1e-5).mul_(1e5)
        self.scale = scale
        self.margin = margin

    def _check_labels(self, labels: torch.Tensor | None) -> None:
        if self.training and labels is None and torch.is_grad_enabled():
            raise ValueError(
                f"{type(self).__name__}: called in training mode without labels, so the margin would never be "
                "applied; pass the target labels (model(x, labels) / model.head(emb, labels)), or call "
                "model.eval() / torch.no_grad() for validation and inference"
            )

    def _cosine(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosine to every class [B, C] and the embedding norms [B, 1], both float32."""
        emb = emb.float()
        norms = torch.linalg.vector_norm(emb, dim=1, keepdim=True)
        unit = emb / norms.clamp_min(1e-12)
        cosine = F.linear(unit, F.normalize(self.kernel.float(), dim=1))
        return cosine.clamp(-1 + self.eps, 1 - self.eps), norms

    def extra_repr(self) -> str:
        c, d = self.kernel.shape
        return f"embedding_dim={d}, num_classes={c}, scale={self.scale}, margin={self.margin}"


class ArcFaceHead(_MarginHead):
    """ArcFace (Deng et al., 2019): additive angular margin m on the target angle, logits s*cos."""

    def forward(
        self, emb: torch.Tensor, labels: torch.Tensor | None = None, update_stats: bool = True
    ) -> torch.Tensor:
        self._check_labels(labels)
        with torch.autocast(emb.device.type, enabled=False):
            cosine, _ = self._cosine(emb)
            if self.training and labels is not None:
                target = F.one_hot(labels.long(), cosine.shape[1]).bool()
                theta = torch.clip(cosine.acos() + self.margin, self.eps, math.pi - self.eps)
                cosine = torch.where(target, theta.cos(), cosine)
            return cosine * self.scale


class AdaFaceHead(_MarginHead):
    """AdaFace (Kim et al., 2022), following mk-minchul/AdaFace head.py.

    The embedding's norm is the image-quality proxy: high-norm (easy, clear) samples get an angular margin,
    low-norm (hard, blurry) ones an additive margin that is smaller, so unrecognisable images are not forced.
    The norm is standardised with batch mean/std tracked by EMA (rate t_alpha) in buffers.
    Differences from the reference, each deliberate: statistics update only in training mode with labels, and
    only when `update_stats` (MixUp/CutMix call the head twice on the same embedding per step: pass
    `update_stats=False` on the second call, else the EMA moves twice as fast); a batch of one leaves the std
    untouched (its unbiased std is NaN and would poison the buffer forever); the margin is computed on the
    target column only, which equals the reference (it rewrites every column with cos(acos(c)) = c).
    """

    def __init__(
        self, embedding_dim: int, num_classes: int, scale: float, margin: float, h: float, t_alpha: float
    ) -> None:
        super().__init__(embedding_dim, num_classes, scale, margin)
        self.h = h
        self.t_alpha = t_alpha
        self.register_buffer("batch_mean", torch.ones(1) * 20)
        self.register_buffer("batch_std", torch.ones(1) * 100)

    @torch.no_grad()
    def _update_stats(self, safe_norms: torch.Tensor) -> None:
        a = self.t_alpha
        self.batch_mean.mul_(1 - a).add_(a * safe_norms.mean())
        if safe_norms.shape[0] > 1:
            self.batch_std.mul_(1 - a).add_(a * safe_norms.std())

    def forward(
        self, emb: torch.Tensor, labels: torch.Tensor | None = None, update_stats: bool = True
    ) -> torch.Tensor:
        self._check_labels(labels)
        with torch.autocast(emb.device.type, enabled=False):
            cosine, norms = self._cosine(emb)
            if not (self.training and labels is not None):
                return cosine * self.scale
            # Detached: the margin depends on the norm, but no gradient flows through that dependence.
            safe_norms = torch.clip(norms, min=0.001, max=100).detach()
            if update_stats:
                self._update_stats(safe_norms)  # before the scaler, as in the reference
            margin_scaler = (safe_norms - self.batch_mean) / (self.batch_std + self.eps) * self.h
            margin_scaler = torch.clip(margin_scaler, -1, 1)  # [B, 1]

            target = F.one_hot(labels.long(), cosine.shape[1]).bool()
            g_angular = -self.margin * margin_scaler
            theta_m = torch.clip(cosine.acos() + g_angular, min=self.eps, max=math.pi - self.eps)
            g_add = self.margin + self.margin * margin_scaler
            cosine = torch.where(target, theta_m.cos() - g_add, cosine)
            return cosine * self.scale

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, h={self.h}, t_alpha={self.t_alpha}"


HEADS = {"linear": LinearHead, "arcface": ArcFaceHead, "adaface": AdaFaceHead}
MARGIN_HEADS = ("arcface", "adaface")


def build_head(cfg: HeadConfig, num_classes: int) -> nn.Module:
    """The head named by `cfg.name`, mapping `cfg.embedding_dim` -> `num_classes` logits."""
    if cfg.name == "linear":
        return LinearHead(cfg.embedding_dim, num_classes)
    if cfg.name == "arcface":
        return ArcFaceHead(cfg.embedding_dim, num_classes, cfg.scale, cfg.margin)
    if cfg.name == "adaface":
        return AdaFaceHead(cfg.embedding_dim, num_classes, cfg.scale, cfg.margin, cfg.h, cfg.t_alpha)
    raise ValueError(f"unknown head {cfg.name!r}; choose one of {sorted(HEADS)}")
