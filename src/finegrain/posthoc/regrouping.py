"""Find groups of confusable classes from out-of-fold embeddings and predictions.

    rg = Regrouper(pca_dims=50, distance_threshold=0.5, confusion_weight=0.5).fit(emb, labels, oof_probs)
    rg.groups_            # [[0, 7], [1], [2, 5, 9], ...] class indices, one list per group
    rg.class_to_group_    # [C] group id of each class
    rg.embedding_2d_      # [n, 2] t-SNE coordinates of the (first) embedding space, for plotting

How: each embedding space is reduced by PCA, class centroids are compared by cosine distance (normalised to
[0, 1] by the largest one), spaces are averaged (embeddings of different backbones live in different spaces,
so only their class-distance matrices can be combined), blended with an out-of-fold confusion distance and
the CLASSES are clustered agglomeratively (average linkage) under `distance_threshold`; singletons are fine.
t-SNE is only for the picture. Plotting helpers (`plot_groups`, `groups_html`) live here too.
"""

from __future__ import annotations

import base64
import html
import io
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "Regrouper",
    "centroid_distance",
    "cluster_classes",
    "confusion_matrix_soft",
    "groups_html",
    "hangul_font",
    "pair_confusion",
    "plot_groups",
    "run_tsne",
]


def _as_list(x: Any) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


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


def run_tsne(
    x: np.ndarray, perplexity: float, backend: str = "auto", seed: int = 0, n_jobs: int = 2
) -> np.ndarray:
    """[n, 2] t-SNE coordinates: openTSNE (FFT gradients, fast at 30k points) unless backend="sklearn"."""
    n = len(x)
    if n < 4:
        return np.zeros((n, 2))
    # Perplexity must stay below n/3 or the neighbour search has too few points to choose from.
    perplexity = float(min(perplexity, max((n - 1) / 3.0, 1.0)))
    if backend in ("auto", "opentsne"):
        try:
            import openTSNE
        except ImportError:
            if backend == "opentsne":
                raise
        else:
            large = n > 10_000
            tsne = openTSNE.TSNE(
                n_components=2,
                perplexity=perplexity,
                # Below a few thousand points thread start-up and spin-waits cost more than they save (5x
                # slower on a busy 2-core machine), so small maps run single-threaded.
                n_jobs=n_jobs if n > 5000 else 1,
                random_state=seed,
                negative_gradient_method="fft" if n > 5000 else "bh",
                initialization="pca",
                # At tens of thousands of points the map only has to show the cluster layout: half the usual
                # final iterations and a coarser FFT grid (its cost grows with the map's extent) halve the time
                # without changing which classes sit together (the 30k-point budget is 60 s on 2 cores).
                n_iter=250 if large else 500,
                ints_in_interval=2 if large else 1,
                verbose=False,
            )
            return np.asarray(tsne.fit(np.ascontiguousarray(x, dtype=np.float64)))
    elif backend != "sklearn":
        raise ValueError(f"tsne_backend {backend!r}: choose one of auto, opentsne, sklearn")
    from sklearn.manifold import TSNE

    return TSNE(
        n_components=2, perplexity=perplexity, random_state=seed, n_jobs=n_jobs, init="pca"
    ).fit_transform(x)


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


def hangul_font() -> str | None:
    """Path of an installed font that has Hangul glyphs, or None (then labels fall back to class indices)."""
    from matplotlib import font_manager, ft2font

    for path in font_manager.findSystemFonts():
        try:
            if ord("가") in ft2font.FT2Font(path).get_charmap():
                return path
        except (RuntimeError, OSError, ValueError):
            continue
    return None


def plot_groups(rg: Regrouper, out_png: str, label_top: int = 10) -> dict[str, Any]:
    """Scatter the t-SNE map coloured by group; label the most-confused classes. Returns how labels were drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    if rg.embedding_2d_ is None:
        raise ValueError("Regrouper was fitted with compute_tsne=False: nothing to plot")
    xy, y = rg.embedding_2d_, rg.tsne_labels_
    group = rg.class_to_group_[y]
    sizes = np.array([len(rg.groups_[g]) for g in group])
    font_path = hangul_font()
    names = [str(c) for c in rg.classes_]
    use_names = font_path is not None or all(n.isascii() for n in names)
    fig, ax = plt.subplots(figsize=(12, 10), dpi=100)
    single = sizes == 1
    dot = float(np.clip(20_000 / max(len(xy), 1), 1.0, 12.0))  # visible at 500 points, no blob at 30,000
    # Singletons in grey so the multi-class groups (the interesting part) stand out.
    ax.scatter(xy[single, 0], xy[single, 1], s=dot, c="lightgrey", linewidths=0, rasterized=True)
    # tab20 without its two greys, which would read as singletons.
    palette = np.array([plt.get_cmap("tab20")(i) for i in range(20) if i not in (14, 15)])
    colours = palette[group[~single] % len(palette)]
    ax.scatter(xy[~single, 0], xy[~single, 1], s=dot * 1.5, c=colours, linewidths=0, rasterized=True)
    labelled = rg.most_confused_classes(label_top)
    prop = font_manager.FontProperties(fname=font_path) if font_path else None
    for k, c in enumerate(labelled):
        rows = y == c
        if not rows.any():
            continue
        cx, cy = np.median(xy[rows], axis=0)
        text = names[c] if use_names else f"#{c}"
        # The most-confused classes come in pairs sitting on each other: stagger labels so both stay legible.
        ax.annotate(
            text,
            (cx, cy),
            xytext=(6, 6 - 12 * (k % 2)),
            textcoords="offset points",
            fontsize=8,
            fontproperties=prop,
            bbox={"fc": "white", "alpha": 0.7, "lw": 0},
        )
    n_multi = sum(len(g) > 1 for g in rg.groups_)
    ax.set_title(f"t-SNE of out-of-fold embeddings: {rg.n_classes_} classes, {n_multi} multi-class groups")
    ax.set_xticks([])
    ax.set_yticks([])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(out_png, bbox_inches="tight")
    plt.close(fig)
    glyphs = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    if glyphs:  # labels are chosen so this cannot happen; if it does, fail rather than ship boxes
        raise RuntimeError(f"{out_png}: glyphs missing from the plot font: {glyphs[0]}")
    return {"font": font_path, "labels": "names" if use_names else "indices", "labelled": labelled}


def groups_html(rg: Regrouper, png_path: str, title: str = "finegrain regroup") -> str:
    """A self-contained HTML page (PNG inlined as base64 + the groups table) for the KFP UI."""
    with open(png_path, "rb") as fh:
        img = base64.b64encode(fh.read()).decode("ascii")
    within = rg.within_group_confusion()
    rows = []
    for gid, (names, conf) in enumerate(zip(rg.group_names_, within)):
        if len(names) < 2:
            continue
        cls = ", ".join(html.escape(str(n)) for n in names)
        rows.append(f"<tr><td>{gid}</td><td>{len(names)}</td><td>{conf:.4f}</td><td>{cls}</td></tr>")
    n_single = sum(len(g) == 1 for g in rg.groups_)
    buf = io.StringIO()
    buf.write(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>")
    buf.write(
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body>"
    )
    buf.write(
        f"<h1>{html.escape(title)}</h1><img alt='t-SNE' src='data:image/png;base64,{img}' style='max-width:100%'>"
    )
    buf.write(f"<p>{len(rows)} multi-class groups, {n_single} singleton classes.</p>")
    buf.write("<table><tr><th>group</th><th>classes</th><th>within-group confusion</th><th>members</th></tr>")
    buf.write("".join(rows) + "</table></body></html>")
    return buf.getvalue()
