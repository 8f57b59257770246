"""Flag training labels that out-of-fold predictions say are probably wrong (loss or confident learning).

    probs, classes = load_oof("run/ensemble/oof_probs.npz", image_ids)   # rows aligned to image_ids
    flags = find_noisy_labels(probs, given, method="confident_learning", threshold=0.0)

`loss`: flag when -log p(given) > threshold. `confident_learning` (Northcutt et al.): per-class thresholds
t_j = mean self-confidence p_j over the rows labelled j; a row labelled y is flagged when some other class k has
p_k >= t_k while p_y < t_y; its margin is max_k (p_k - t_k) - (p_y - t_y) over those k, and rows flag only when
that margin is at least `threshold`. Out-of-fold predictions are required: in-fold ones memorise the noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from finegrain.metrics import softmax


@dataclass
class NoisyLabel:
    row: int  # index into the arrays given to find_noisy_labels
    given: int
    predicted: int
    p_given: float
    p_predicted: float
    score: float  # loss (method loss) or margin (confident learning); larger = more surely wrong


def load_oof(uri: str, image_ids: Sequence[str], classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities [n, len(classes)] for `image_ids` from an oof .npz, and a mask of the ids it covers.

    The npz holds image_id and probs or logits over its own `classes`; columns are mapped by name, classes it
    lacks get probability 0. ValueError names the file when the keys are missing or no id matches.
    """
    from finegrain import storage

    with storage.local_path(uri, suffix=".npz") as path:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            if "image_id" not in keys or "classes" not in keys or not ({"probs", "logits"} & keys):
                raise ValueError(f"{uri}: expected keys image_id, classes and probs or logits; found {sorted(keys)}")
            ids = [str(x) for x in npz["image_id"]]
            oof_classes = [str(x) for x in npz["classes"]]
            scores = npz["probs"] if "probs" in keys else softmax(npz["logits"])
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(ids), len(oof_classes)):
        raise ValueError(f"{uri}: scores have shape {scores.shape}, expected ({len(ids)}, {len(oof_classes)})")
    # Several members' oof files may repeat an id; the later row wins (they are predictions of the same image).
    row_of = {image_id: i for i, image_id in enumerate(ids)}
    col_of = {c: j for j, c in enumerate(oof_classes)}
    out = np.zeros((len(image_ids), len(classes)), dtype=np.float64)
    covered = np.array([str(i) in row_of for i in image_ids], dtype=bool)
    if not covered.any():
        raise ValueError(f"{uri}: none of its {len(ids)} image_ids is a training image of this dataset")
    rows = [row_of[str(i)] for i, c in zip(image_ids, covered) if c]
    for j, name in enumerate(classes):
        if name in col_of:
            out[covered, j] = scores[rows, col_of[name]]
    sums = out.sum(axis=1, keepdims=True)
    out = np.divide(out, sums, out=np.zeros_like(out), where=sums > 0)
    return out, covered


def find_noisy_labels(
    probs: np.ndarray, given: np.ndarray, method: str = "confident_learning", threshold: float = 0.0
) -> list[NoisyLabel]:
    """Rows whose given label the predictions contradict, most certain first."""
    probs = np.asarray(probs, dtype=np.float64)
    given = np.asarray(given, dtype=np.int64)
    n, c = probs.shape
    if n == 0:
        return []
    p_given = probs[np.arange(n), given]
    if method == "loss":
        loss = -np.log(np.clip(p_given, 1e-15, 1.0))
        flagged = np.nonzero(loss > threshold)[0]
        score = loss
    elif method == "confident_learning":
        t = np.full(c, np.inf)
        for j in range(c):
            mine = given == j
            if mine.any():
                t[j] = probs[mine, j].mean()
        above = probs >= t[None, :]
        above[np.arange(n), given] = False
        excess = np.where(above, probs - t[None, :], -np.inf).max(axis=1)
        score = excess - (p_given - t[given])
        flagged = np.nonzero(above.any(axis=1) & (p_given < t[given]) & (score >= threshold))[0]
    else:
        raise ValueError(f"preprocess.noise_method: {method!r}; choose one of ['loss', 'confident_learning']")
    others = probs.copy()
    others[np.arange(n), given] = -1.0
    predicted = others.argmax(axis=1)
    out = [
        NoisyLabel(int(i), int(given[i]), int(predicted[i]), float(p_given[i]), float(probs[i, predicted[i]]),
                   float(score[i]))  # fmt: skip
        for i in flagged
    ]
    return sorted(out, key=lambda x: (-x.score, x.row))
