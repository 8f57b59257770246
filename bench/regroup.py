"""Benchmark regroup: finegrain's Regrouper (PCA + openTSNE + class clustering) vs scikit-learn's TSNE.

    python bench/regroup.py                        # 30,000 x 768 embeddings, 396 classes (goal: <= 60 s on 2 cores)
    python bench/regroup.py --n 600 --dim 32 --classes 30 --sklearn-points 300   # smoke run, seconds

The data has planted groups of look-alike classes (pairs and triples, like the Hecto car generations); the
script prints the adjusted Rand index of the recovered class groups against the planted ones. scikit-learn's
TSNE is timed on the same PCA-reduced data; at 30k points it takes many minutes, so by default it runs on a
subset (`--sklearn-points`) and the full-size time is EXTRAPOLATED as O(n log n) and labelled as such, and a
run longer than `--sklearn-timeout` seconds is stopped and reported as ">T s".
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time

import numpy as np

os.environ.setdefault("MPLBACKEND", "Agg")


def make_planted(
    n: int, dim: int, n_classes: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[int]]]:
    """Embeddings, labels, OOF-like probabilities and the planted class groups (pairs/triples + singletons)."""
    rng = np.random.default_rng(seed)
    groups: list[list[int]] = []
    c = 0
    while c < n_classes:
        size = int(rng.choice([1, 1, 2, 3]))  # about half the classes have a look-alike
        groups.append(list(range(c, min(c + size, n_classes))))
        c += size
    group_of = np.empty(n_classes, dtype=np.int64)
    for g, members in enumerate(groups):
        group_of[members] = g
    group_centres = rng.normal(0.0, 1.0, size=(len(groups), dim)).astype(np.float32)
    class_centres = group_centres[group_of] + rng.normal(0.0, 0.25, size=(n_classes, dim)).astype(np.float32)
    labels = rng.integers(0, n_classes, size=n)
    emb = class_centres[labels] + rng.normal(0.0, 0.6, size=(n, dim)).astype(np.float32)
    # A classifier that mixes up classes of the same group: logits from cosine to the class centres.
    unit = class_centres / np.linalg.norm(class_centres, axis=1, keepdims=True)
    logits = 20.0 * (emb / np.linalg.norm(emb, axis=1, keepdims=True)) @ unit.T
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return emb, labels, probs.astype(np.float32), groups


def _sklearn_tsne(x: np.ndarray, perplexity: float, queue: mp.Queue) -> None:
    from sklearn.manifold import TSNE

    t0 = time.perf_counter()
    TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0, n_jobs=2).fit_transform(x)
    queue.put(time.perf_counter() - t0)


def time_sklearn(x: np.ndarray, perplexity: float, timeout: float) -> float | None:
    """Seconds sklearn TSNE takes on `x`, or None when it runs past `timeout` (the child is stopped)."""
    # spawn, not fork: forking after openTSNE's threads ran can deadlock the child.
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    # Not a daemon: sklearn's loky refuses parallel neighbour search inside daemonic processes.
    proc = ctx.Process(target=_sklearn_tsne, args=(x, perplexity, queue), daemon=False)
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.terminate()
        proc.join(5)
        return None
    return float(queue.get(timeout=5)) if proc.exitcode == 0 else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30_000, help="embedding rows")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--classes", type=int, default=396)
    ap.add_argument("--pca-dims", type=int, default=50)
    ap.add_argument("--perplexity", type=float, default=30.0)
    ap.add_argument(
        "--sklearn-points", type=int, default=5000, help="time sklearn on this many rows (0 = skip)"
    )
    ap.add_argument("--sklearn-timeout", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score

    from finegrain.posthoc.regrouping import Regrouper

    emb, labels, probs, planted = make_planted(args.n, args.dim, args.classes, args.seed)
    print(f"data: {args.n} x {args.dim} embeddings, {args.classes} classes, {len(planted)} planted groups")

    rg = Regrouper(pca_dims=args.pca_dims, perplexity=args.perplexity, seed=args.seed, n_jobs=2)
    t0, c0 = time.perf_counter(), time.process_time()
    rg.fit(emb, labels, probs)
    t_fine, cpu_fine = time.perf_counter() - t0, time.process_time() - c0
    truth = np.empty(args.classes, dtype=np.int64)
    for g, members in enumerate(planted):
        truth[members] = g
    ari = adjusted_rand_score(truth, rg.class_to_group_)
    print(
        f"finegrain Regrouper.fit (PCA {args.pca_dims} + openTSNE + clustering): {t_fine:.1f} s wall, ARI {ari:.3f}"
    )
    # CPU seconds over 2 is the wall time an unshared 2-core machine would need (loaded machines inflate wall).
    print(
        f"  cpu time {cpu_fine:.1f} s (load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )

    if args.sklearn_points <= 0:
        return 0
    m = min(args.sklearn_points, args.n)
    x = PCA(n_components=min(args.pca_dims, args.dim), random_state=args.seed).fit_transform(emb[:m])
    t_sk = time_sklearn(x, args.perplexity, args.sklearn_timeout)
    if t_sk is None:
        print(f"sklearn TSNE on {m} points: >{args.sklearn_timeout:.0f} s (stopped)")
        return 0
    print(f"sklearn TSNE on {m} points (measured): {t_sk:.1f} s")
    if m < args.n:
        est = t_sk * (args.n * np.log(args.n)) / (m * np.log(m))
        print(f"sklearn TSNE on {args.n} points (EXTRAPOLATED from {m} as n log n): ~{est:.0f} s")
        print(f"ratio sklearn/finegrain (extrapolated): ~{est / t_fine:.1f}x")
    else:
        print(f"ratio sklearn/finegrain: {t_sk / t_fine:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
