"""Where a classifier goes wrong, from its out-of-fold predictions: what the error-analysis page shows.

    errors = analyse_errors(oof_probs, labels, image_ids, classes, groups=regroup_groups, aliases=cfg.data.aliases)
    errors.pairs       # the most confused (true, predicted) class pairs, with their images
    errors.per_class   # accuracy, LogLoss, mean p(true) and the class it is most often taken for, per class
    errors.worst       # the validation images with the highest LogLoss term

Everything is in the metric's view: alias columns are summed into their canonical class first (as
`finegrain.metrics.log_loss` scores them), so an alias "mistaken" for its canonical class is no error here.
Only counts, means and a few top-k lists leave this module, so the page stays small at 400 classes and 33k images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from finegrain.metrics import merge_alias_columns, per_image_log_loss

PAIR_EXAMPLES = 4  # mistaken images shown per confused pair
REFERENCES = 2  # and images of the class they were taken for


@dataclass
class ErrorAnalysis:
    """The summary tables of one set of out-of-fold predictions (see the module docstring)."""

    classes: list[str]
    n_images: int
    accuracy: float
    log_loss: float
    per_class: (
        pd.DataFrame
    )  # class, group, images, accuracy, logloss, mean_p_true, taken_for, taken_for_count
    # true, predicted, count, share_of_true, same_group, examples (the mistaken images' ids, worst first) and
    # references (ids of images of the predicted class it gets right most surely)
    pairs: pd.DataFrame
    worst: pd.DataFrame  # image_id, true, predicted, p_true, p_predicted, logloss
    groups: dict[
        int, list[str]
    ]  # regroup's multi-class groups by their number in groups.json ({}: none given)


def _merged(
    probs: np.ndarray, labels: np.ndarray, classes: Sequence[str], aliases: Mapping[str, str] | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    if not aliases:
        return probs, np.asarray(labels, dtype=np.int64), list(classes)
    merged, kept, name_to_col = merge_alias_columns(probs, classes, aliases)
    return merged, np.array([name_to_col[classes[i]] for i in labels], dtype=np.int64), kept


def analyse_errors(
    probs: np.ndarray,
    labels: np.ndarray,
    image_ids: Sequence[str],
    classes: Sequence[str],
    groups: Sequence[Sequence[str]] | None = None,
    aliases: Mapping[str, str] | None = None,
    top_pairs: int = 60,
    worst: int = 60,
) -> ErrorAnalysis:
    """Confused pairs, per-class scores and the worst images of predictions `probs` [n, C] for `labels`."""
    p, y, names = _merged(probs, labels, classes, aliases)
    ids = np.asarray([str(i) for i in image_ids])
    n, n_classes = p.shape
    loss = per_image_log_loss(y, p)
    pred = p.argmax(axis=1)
    p_true = p[np.arange(n), y]
    group_of = _group_index(groups, names)

    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    per_class = _per_class(confusion, y, loss, p_true, names, group_of)
    pairs = _pairs(confusion, y, pred, loss, ids, names, group_of, top_pairs)
    order = np.argsort(-loss, kind="stable")[:worst]
    worst_rows = pd.DataFrame(
        {
            "image_id": ids[order],
            "true": [names[i] for i in y[order]],
            "predicted": [names[i] for i in pred[order]],
            "p_true": p_true[order],
            "p_predicted": p[order, pred[order]],
            "logloss": loss[order],
        }
    )
    multi = {g: list(members) for g, members in enumerate(groups or []) if len(members) > 1}
    return ErrorAnalysis(
        names, n, float(np.mean(pred == y)), float(np.mean(loss)), per_class, pairs, worst_rows, multi
    )


def _group_index(groups: Sequence[Sequence[str]] | None, names: list[str]) -> np.ndarray:
    """Group number per class (-1: in no multi-class group); a class merged away by an alias keeps none."""
    out = np.full(len(names), -1, dtype=np.int64)
    index = {c: i for i, c in enumerate(names)}
    for g, members in enumerate(groups or []):
        if len(members) > 1:
            for c in members:
                if c in index:
                    out[index[c]] = g
    return out


def _per_class(
    confusion: np.ndarray,
    y: np.ndarray,
    loss: np.ndarray,
    p_true: np.ndarray,
    names: list[str],
    group_of: np.ndarray,
) -> pd.DataFrame:
    n_classes = len(names)
    count = np.bincount(y, minlength=n_classes)
    seen = np.maximum(count, 1)
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    taken_for = off.argmax(axis=1)
    taken_count = off[np.arange(n_classes), taken_for]
    return pd.DataFrame(
        {
            "class": names,
            "group": group_of,
            "images": count,
            "accuracy": np.diag(confusion) / seen,
            "logloss": np.bincount(y, weights=loss, minlength=n_classes) / seen,
            "mean_p_true": np.bincount(y, weights=p_true, minlength=n_classes) / seen,
            "taken_for": [names[j] if c else "" for j, c in zip(taken_for, taken_count)],
            "taken_for_count": taken_count,
        }
    )[count > 0].reset_index(drop=True)


def _pairs(
    confusion: np.ndarray,
    y: np.ndarray,
    pred: np.ndarray,
    loss: np.ndarray,
    ids: np.ndarray,
    names: list[str],
    group_of: np.ndarray,
    top: int,
) -> pd.DataFrame:
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    flat = np.flatnonzero(off)
    flat = flat[np.argsort(-off.ravel()[flat], kind="stable")][:top]
    rows = []
    for t, q in zip(*np.unravel_index(flat, off.shape)):
        hit = np.flatnonzero((y == t) & (pred == q))
        hit = hit[np.argsort(-loss[hit], kind="stable")][:PAIR_EXAMPLES]
        # what the predicted class looks like: its own images it gets right most surely
        own = np.flatnonzero((y == q) & (pred == q))
        own = own[np.argsort(loss[own], kind="stable")][:REFERENCES]
        same = bool(group_of[t] >= 0 and group_of[t] == group_of[q])
        rows.append(
            {
                "true": names[t],
                "predicted": names[q],
                "count": int(off[t, q]),
                "share_of_true": float(off[t, q] / max(confusion[t].sum(), 1)),
                "same_group": same,
                "examples": ids[hit].tolist(),
                "references": ids[own].tolist(),
            }
        )
    columns = ["true", "predicted", "count", "share_of_true", "same_group", "examples", "references"]
    return pd.DataFrame(rows, columns=columns)
