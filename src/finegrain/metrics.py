"""The one competition metric (multi-class LogLoss with alias pairs merged) and ECE, used by every step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

EPS = 1e-15


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
