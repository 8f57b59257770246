"""The one competition metric (multi-class LogLoss with alias pairs merged) and ECE, used by every step.

Also the one-parameter temperature fit (`fit_temperature`) and the LogLoss after it (`tempered_log_loss`): a
member's headline validation LogLoss is measured after that fit, since a margin head's raw logits (s * cos,
s = 64) score far worse than uniform while ranking the classes well; see docs/design.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

EPS = 1e-15
# Margin heads emit s*cos logits with s = 64, so an undertrained member can need T well above 20.
T_MIN, T_MAX = 0.05, 200.0


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def merge_alias_columns(
    probs: np.ndarray, classes: Sequence[str], aliases: Mapping[str, str]
) -> tuple[np.ndarray, list[str], dict[str, int]]:
    """Sum each alias column into its canonical column, as the scorer does.

    Returns the merged probabilities, the merged class list and a map from every original class name
    (aliases included) to its merged column.
    """
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    keep = [c for c in classes if not (c in aliases and aliases[c] in index)]
    out_index = {c: i for i, c in enumerate(keep)}
    merged = np.zeros((probs.shape[0], len(keep)), dtype=np.float64)
    name_to_col: dict[str, int] = {}
    for c, i in index.items():
        target = aliases[c] if (c in aliases and aliases[c] in index) else c
        col = out_index[target]
        merged[:, col] += probs[:, i]
        name_to_col[c] = col
    return merged, keep, name_to_col


def log_loss(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str] | None = None,
    aliases: Mapping[str, str] | None = None,
) -> float:
    """Competition LogLoss: rows renormalised to 1, clipped to [1e-15, 1-1e-15], alias pairs scored as one.

    y_true: integer column indices into `probs` (or class names when `classes` is given).
    """
    return float(np.mean(per_image_log_loss(y_true, probs, classes, aliases)))


def per_image_log_loss(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str] | None = None,
    aliases: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Each row's term of `log_loss` (its mean is the competition LogLoss): what the error analysis ranks by."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D [n, C], got shape {p.shape}")
    y = np.asarray(y_true)
    if classes is not None and y.dtype.kind in ("U", "S", "O"):
        lookup = {c: i for i, c in enumerate(classes)}
        missing = sorted({str(v) for v in y} - set(lookup))
        if missing:
            raise ValueError(f"labels not among the classes: {missing[:5]}")
        y = np.array([lookup[v] for v in y])
    y = y.astype(np.int64)
    if len(y) != len(p):
        raise ValueError(f"{len(y)} labels for {len(p)} probability rows")
    if len(y) == 0:
        raise ValueError("log_loss of zero rows")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contain NaN or inf")
    row_sum = p.sum(axis=1, keepdims=True)
    p = p / np.where(row_sum > 0, row_sum, 1.0)
    if aliases and classes is not None:
        p, _, name_to_col = merge_alias_columns(p, classes, aliases)
        y = np.array([name_to_col[classes[i]] for i in y])
    # Clipping the picked entries is clipping the matrix, at 1/C of the cost (400 classes x 33k rows).
    return -np.log(np.clip(p[np.arange(len(y)), y], EPS, 1 - EPS))


def accuracy(y_true: np.ndarray, probs: np.ndarray) -> float:
    return float(np.mean(np.asarray(probs).argmax(axis=1) == np.asarray(y_true)))


def reliability_bins(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per equal-width confidence bin: count, mean confidence and accuracy (for ECE and diagrams)."""
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(y_true)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed bins, with 0 going to the first bin
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / count, 0.0)
        mean_acc = np.where(count > 0, acc_sum / count, 0.0)
    return {"edges": edges, "count": count, "confidence": mean_conf, "accuracy": mean_acc}


def ece(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error of the top-1 confidence over `n_bins` equal-width bins."""
    b = reliability_bins(y_true, probs, n_bins)
    n = b["count"].sum()
    return float(np.sum(b["count"] / n * np.abs(b["accuracy"] - b["confidence"])))


def check_logits(logits: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(logits as float64, labels as int64) after checking shapes, finiteness and the label range."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"logits must be 2-D [n, C], got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits contain NaN or inf")
    if y is None:
        return z, None
    y = np.asarray(y).astype(np.int64)
    if y.shape != (len(z),):
        raise ValueError(f"{len(y)} labels for {len(z)} logit rows")
    if len(y) and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"labels outside [0, {z.shape[1]})")
    return z, y


def temperature_nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of softmax(logits / temperature) at the true labels."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature in [T_MIN, T_MAX] that minimises the NLL of softmax(logits / T) on (logits, y)."""
    z, y = check_logits(logits, y)
    if len(y) == 0:
        raise ValueError("cannot fit a temperature on zero rows")
    res = minimize_scalar(
        lambda log_t: temperature_nll(z, y, math.exp(log_t)),
        bounds=(math.log(T_MIN), math.log(T_MAX)),
        method="bounded",
        options={"xatol": 1e-7},
    )
    return float(math.exp(res.x))


def tempered_log_loss(
    y_true: np.ndarray,
    logits: np.ndarray,
    classes: Sequence[str] | None = None,
    aliases: Mapping[str, str] | None = None,
) -> tuple[float, float]:
    """(LogLoss of softmax(logits / T), T) with T fitted on these same rows: an in-sample one-parameter fit.

    One temperature cannot change which class a row ranks first; it only undoes a head's over- or
    under-confidence, so this is what the logits score once calibrated, optimistic by about one parameter.
    """
    temperature = fit_temperature(logits, y_true)
    return log_loss(y_true, softmax(logits, temperature), classes, aliases), temperature
