"""The Regrouper estimator: find groups of confusable classes from out-of-fold embeddings and predictions.

    rg = Regrouper(pca_dims=50, distance_threshold=0.5, confusion_weight=0.5).fit(emb, labels, oof_probs)
    rg.groups_            # [[0, 7], [1], [2, 5, 9], ...] class indices, one list per group
    rg.class_to_group_    # [C] group id of each class
    rg.embedding_2d_      # [n, 2] t-SNE coordinates of the (first) embedding space, for plotting

How: each embedding space is reduced by PCA, class centroids are compared by cosine distance (normalised to
[0, 1] by the largest one), spaces are averaged (embeddings of different backbones live in different spaces,
so only their class-distance matrices can be combined), blended with an out-of-fold confusion distance and
the CLASSES are clustered agglomeratively (average linkage) under `distance_threshold`; singletons are fine.
t-SNE is only for the picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from finegrain.posthoc.regrouping.distances import (
    centroid_distance,
    cluster_classes,
    confusion_matrix_soft,
    pair_confusion,
)
from finegrain.posthoc.regrouping.tsne import run_tsne


def _as_list(x: Any) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


class Regrouper:
    """Cluster classes into groups of look-alikes (sklearn-style: `__init__` stores, `fit` learns `*_`)."""

    def __init__(
        self,
        pca_dims: int = 50,
        perplexity: float = 30.0,
        tsne_backend: str = "auto",
        distance_threshold: float = 0.5,
        confusion_weight: float = 0.5,
        seed: int = 0,
        n_jobs: int = 2,
        compute_tsne: bool = True,
        classes: Sequence[str] | None = None,
    ) -> None:
        self.pca_dims = pca_dims
        self.perplexity = perplexity
        self.tsne_backend = tsne_backend
        self.distance_threshold = distance_threshold
        self.confusion_weight = confusion_weight
        self.seed = seed
        self.n_jobs = n_jobs
        self.compute_tsne = compute_tsne
        self.classes = classes

    def _reduce(self, emb: np.ndarray) -> np.ndarray:
        from sklearn.decomposition import PCA

        dims = min(self.pca_dims, emb.shape[1], emb.shape[0])
        if dims >= emb.shape[1]:
            return emb - emb.mean(axis=0)
        solver = "randomized" if emb.shape[0] > 2000 else "full"
        return PCA(n_components=dims, svd_solver=solver, random_state=self.seed).fit_transform(emb)

    def fit(
        self,
        embeddings: np.ndarray | Sequence[np.ndarray],
        labels: np.ndarray | Sequence[np.ndarray],
        oof_probs: np.ndarray | None = None,
        oof_labels: np.ndarray | None = None,
    ) -> Regrouper:
        """Learn the groups.

        embeddings/labels: one [n, D] array with its [n] class indices, or lists of them (one per embedding
            space, e.g. per backbone); class distances are averaged over the spaces. t-SNE uses the first one.
        oof_probs: [m, C] out-of-fold probabilities; `oof_labels` [m] defaults to `labels` (single space).
            Without them the grouping uses the embeddings alone.
        """
        spaces = [np.asarray(e, dtype=np.float32) for e in _as_list(embeddings)]
        label_sets = [np.asarray(y, dtype=np.int64) for y in _as_list(labels)]
        if len(spaces) != len(label_sets):
            raise ValueError(f"{len(spaces)} embedding arrays but {len(label_sets)} label arrays")
        for i, (e, y) in enumerate(zip(spaces, label_sets)):
            if e.ndim != 2 or len(e) != len(y):
                raise ValueError(f"embedding space {i}: shape {e.shape} does not match {len(y)} labels")
            if len(e) and (y.min() < 0 or not np.all(np.isfinite(e))):
                raise ValueError(f"embedding space {i}: negative labels or non-finite embeddings")
        if self.classes is not None:
            n_classes = len(self.classes)
        else:
            n_classes = int(max(int(y.max()) for y in label_sets if len(y)) + 1)
        if oof_probs is not None:
            oof_probs = np.asarray(oof_probs, dtype=np.float64)
            if oof_probs.ndim != 2 or (self.classes is not None and oof_probs.shape[1] != n_classes):
                raise ValueError(f"oof_probs shape {oof_probs.shape} does not match {n_classes} classes")
            n_classes = max(n_classes, oof_probs.shape[1])
        if any(len(y) and y.max() >= n_classes for y in label_sets):
            raise ValueError(f"labels reach beyond the {n_classes} classes")
        self.n_classes_ = n_classes
        self.classes_ = list(self.classes) if self.classes is not None else list(range(n_classes))

        reduced = [self._reduce(e) for e in spaces]
        self.centroid_distance_ = np.mean(
            [centroid_distance(r, y, n_classes) for r, y in zip(reduced, label_sets)], 0
        )
        if oof_probs is not None:
            y_probs = label_sets[0] if oof_labels is None else np.asarray(oof_labels, dtype=np.int64)
            if len(y_probs) != len(oof_probs):
                raise ValueError(f"oof_probs has {len(oof_probs)} rows but {len(y_probs)} labels")
            self.confusion_ = confusion_matrix_soft(oof_probs, y_probs, n_classes)
            self.pair_confusion_ = pair_confusion(self.confusion_)
            w = float(self.confusion_weight)
        else:
            self.confusion_ = None
            self.pair_confusion_ = None
            w = 0.0
        dist = (1.0 - w) * self.centroid_distance_
        if self.pair_confusion_ is not None:
            dist = dist + w * (1.0 - self.pair_confusion_)
        np.fill_diagonal(dist, 0.0)
        self.distance_matrix_ = dist
        self.class_to_group_ = cluster_classes(dist, self.distance_threshold)
        n_groups = int(self.class_to_group_.max()) + 1 if n_classes else 0
        self.groups_ = [np.flatnonzero(self.class_to_group_ == g).tolist() for g in range(n_groups)]
        self.group_names_ = [[self.classes_[c] for c in g] for g in self.groups_]
        self.tsne_labels_ = label_sets[0]
        self.embedding_2d_ = (
            run_tsne(reduced[0], self.perplexity, self.tsne_backend, self.seed, self.n_jobs)
            if self.compute_tsne
            else None
        )
        return self

    def within_group_confusion(self) -> list[float]:
        """Per group: mean OOF probability mass its rows give to the OTHER classes of the same group."""
        if self.confusion_ is None:
            return [float("nan")] * len(self.groups_)
        out = []
        for g in self.groups_:
            block = self.confusion_[np.ix_(g, g)]
            out.append(float((block.sum() - np.trace(block)) / len(g)))
        return out

    def most_confused_classes(self, top: int) -> list[int]:
        """The `top` classes with the highest confusion to any other class (centroid distance when no probs)."""
        if self.pair_confusion_ is not None:
            score = (self.pair_confusion_ - np.eye(self.n_classes_)).max(axis=1)
        else:
            score = -(self.centroid_distance_ + np.eye(self.n_classes_) * 9).min(axis=1)
        return np.argsort(-score, kind="stable")[:top].tolist()
