"""The t-SNE map of an embedding space: only for the picture, the groups never depend on it."""

from __future__ import annotations

import numpy as np


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
