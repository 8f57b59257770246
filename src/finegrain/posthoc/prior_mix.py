"""LogLoss safety: mix the ensemble's probabilities with the class prior, p' = (1 - eps) p + eps prior.

    mix = PriorMix(classes=classes, aliases=aliases).fit(oof_probs, y, class_prior(y, n_classes))
    safe = mix.transform(test_probs)              # every entry >= eps * prior[c]

One confident wrong answer costs up to -log(1e-15) = 34.5 nats under the metric's clipping; after the mix it
costs at most -log(eps * prior[c]). eps is chosen on out-of-fold LogLoss from EPS_GRID. 0 is not a candidate:
out-of-fold rows that never show a confident mistake would choose it by a margin of ~eps nats, and leave the test
rows unprotected; the smallest candidate costs at most 1e-4 nats per row. The chosen eps and the prior are stored
in ensemble.json, which the submission (test_probs.npz, written mixed) and the served model both apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from finegrain.metrics import log_loss

EPS_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3)


def class_prior(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Label frequencies with one pseudo-count per class (add-one), so that no class gets probability 0."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(np.float64)
    return (counts + 1.0) / (counts.sum() + n_classes)


def mix_with_prior(probs: np.ndarray, eps: float, prior: np.ndarray) -> np.ndarray:
    """(1 - eps) * p + eps * prior, rows of p renormalised to 1 first."""
    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    prior = np.asarray(prior, dtype=np.float64)
    if prior.shape != (p.shape[1],):
        raise ValueError(f"prior has shape {prior.shape}; the probabilities have {p.shape[1]} classes")
    return (1.0 - eps) * p + eps * (prior / prior.sum())


class PriorMix:
    """The eps of `mix_with_prior` with the lowest LogLoss on (probs, y), from `grid`."""

    def __init__(
        self,
        grid: Sequence[float] = EPS_GRID,
        classes: Sequence[str] | None = None,
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        self.grid = grid
        self.classes = classes
        self.aliases = aliases

    def fit(self, probs: np.ndarray, y: np.ndarray, prior: np.ndarray) -> PriorMix:
        if not self.grid or min(self.grid) <= 0 or max(self.grid) >= 1:
            raise ValueError(f"prior-mix grid must be values in (0, 1), got {list(self.grid)}")
        self.prior_ = np.asarray(prior, dtype=np.float64)
        self.logloss_by_eps_ = {
            float(e): log_loss(y, mix_with_prior(probs, e, self.prior_), self.classes, self.aliases)
            for e in self.grid
        }
        self.eps_ = min(self.logloss_by_eps_, key=self.logloss_by_eps_.get)
        return self

    def transform(self, probs: np.ndarray) -> np.ndarray:
        return mix_with_prior(probs, self.eps_, self.prior_)

    def to_dict(self) -> dict:
        return {"eps": self.eps_, "prior": self.prior_.tolist(), "oof_logloss_by_eps": self.logloss_by_eps_}

    @classmethod
    def from_dict(cls, entry: Mapping, where: str = "ensemble.json") -> PriorMix:
        """Rebuild a fitted mix from its `to_dict` entry; checks eps and the prior."""
        try:
            eps, prior = float(entry["eps"]), np.asarray(entry["prior"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: prior_mix needs 'eps' and 'prior' ({exc})") from None
        if not 0 <= eps < 1 or prior.ndim != 1 or not np.all(prior > 0):
            raise ValueError(f"{where}: prior_mix eps {eps} must be in [0, 1) and every prior entry > 0")
        mix = cls()
        mix.eps_, mix.prior_, mix.logloss_by_eps_ = eps, prior, dict(entry.get("oof_logloss_by_eps") or {})
        return mix
