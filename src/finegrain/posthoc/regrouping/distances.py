"""Class distances and the clustering that turns them into groups of confusable classes.

Each embedding space gives a class-centroid cosine distance (normalised to [0, 1] by its largest value, so
spaces from different backbones can be averaged); out-of-fold probabilities give a pairwise confusion. The
`Regrouper` blends the two and clusters the CLASSES agglomeratively (average linkage).
"""

from __future__ import annotations

import numpy as np


def centroid_distance(embeddings: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """[C, C] cosine distance between class centroids, scaled so the largest off-diagonal value is 1.

    A class with no rows gets distance 1 to everything: nothing is known about it, so nothing pulls it in.
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    sums = np.zeros((n_classes, emb.shape[1]))
    np.add.at(sums, labels, emb)
    counts = np.bincount(labels, minlength=n_classes)
    present = counts > 0
    cent = sums[present] / counts[present, None]
    cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
    known = np.clip(1.0 - cent @ cent.T, 0.0, 2.0)
    np.fill_diagonal(known, 0.0)
    # Scale-free: the trained heads (AdaFace/ArcFace) spread centroids differently per backbone.
    scale = known.max() if known.size and known.max() > 0 else 1.0
    dist = np.ones((n_classes, n_classes))
    dist[np.ix_(present, present)] = known / scale
    np.fill_diagonal(dist, 0.0)
    return dist


def confusion_matrix_soft(probs: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """[C, C] row i = mean predicted distribution of the rows whose true class is i (zeros when i has none)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    sums = np.zeros((n_classes, n_classes))
    np.add.at(sums, labels, probs)
    counts = np.bincount(labels, minlength=n_classes)
    return sums / np.maximum(counts, 1)[:, None]


def pair_confusion(conf: np.ndarray) -> np.ndarray:
    """[C, C] symmetric confusion in [0, 1]: 1 = the two classes are a coin flip, 0 = never mixed up.

    For each pair only the two-class sub-problem counts: 2 * (C_ij + C_ji) / (C_ii + C_jj + C_ij + C_ji).
    Being relative to the pair's own mass keeps it independent of how many classes there are.
    """
    diag = np.diag(conf)
    cross = conf + conf.T
    denom = diag[:, None] + diag[None, :] + cross
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.where(denom > 0, 2.0 * cross / denom, 0.0)
    sim = np.clip(sim, 0.0, 1.0)
    np.fill_diagonal(sim, 1.0)
    return sim


def cluster_classes(distance: np.ndarray, threshold: float) -> np.ndarray:
    """Group id per class: average-linkage agglomerative clustering of a precomputed class distance matrix."""
    from sklearn.cluster import AgglomerativeClustering

    n = distance.shape[0]
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    model = AgglomerativeClustering(
        n_clusters=None, metric="precomputed", linkage="average", distance_threshold=threshold
    )
    raw = model.fit_predict((distance + distance.T) / 2.0)
    # Renumber groups by their smallest class index so the ids are stable and readable.
    order = {g: i for i, g in enumerate(dict.fromkeys(raw.tolist()))}
    return np.array([order[g] for g in raw], dtype=np.int64)
