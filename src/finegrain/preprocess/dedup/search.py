"""The near-duplicate candidate search: each picture's closest neighbours by the correlation of tiny pictures.

    pairs = candidate_pairs(features, min_correlation=0.6, neighbours=2)  # [(i, j, score)], best first

A fixed pHash distance either misses copies or floods the check: on real photos a flat picture's pHash moves by
20+ bits under a mere resize (its DCT coefficients sit near their median), while look-alike photos of one scene
land within 10 bits of each other. Ranking works where absolute distances do not: a copy's original is among
its closest neighbours whatever the distance. So each picture proposes its `neighbours` best partners, scored by
the best of four correlations of tiny pictures (whole vs whole, mirrored vs whole, inner crop vs whole both
ways), above a loose floor. At Hecto's 33k pictures the search is a few dense float32 products (blocked: memory
stays at block x n) and the check gets at most `neighbours` x n pairs.
"""

from __future__ import annotations

import contextlib

import numpy as np
from threadpoolctl import threadpool_limits

_BLOCK = 2048  # rows of the similarity matrix held at a time (2048 x 33k float32: 270 MB)
_ONE_THREAD_UP_TO = 2048  # pictures; see candidate_pairs


def candidate_pairs(
    features: np.ndarray, min_correlation: float, neighbours: int
) -> list[tuple[int, int, float]]:
    """(i, j, score) with i < j, unique, sorted by score (best first); features from normalize.tiny_features."""
    n = len(features)
    if n < 2 or neighbours < 1:
        return []
    whole, inner = np.ascontiguousarray(features[:, 0]), np.ascontiguousarray(features[:, 2])
    k = min(neighbours, n - 1)
    found_i, found_j, found_s = [], [], []
    # A small search runs on one BLAS thread: OpenBLAS's threads spin for ~0.1 s after a call, on the cores the
    # check's workers start on next (0.085 s of CPU taken from them on 2 cores at 1,752 pictures, where the
    # products take ~0.05 s on one thread). A larger one takes every thread: 4,000 pictures took 0.67 s on one
    # (the products grow as n squared), 33k would take ~20 s.
    one_thread = n <= _ONE_THREAD_UP_TO
    with threadpool_limits(1, user_api="blas") if one_thread else contextlib.nullcontext():
        for start in range(0, n, _BLOCK):
            stop = min(start + _BLOCK, n)
            rows = features[start:stop]
            # Row i against every whole picture j: i itself, i mirrored, i's inner crop (a crop of i scaled back
            # looks like it); and i whole against j's inner crop (i is the crop of j).
            score = rows[:, 0] @ whole.T
            for other in (rows[:, 1] @ whole.T, rows[:, 2] @ whole.T, rows[:, 0] @ inner.T):
                np.maximum(score, other, out=score)
            score[np.arange(stop - start), np.arange(start, stop)] = -np.inf
            best = np.argpartition(-score, k - 1, axis=1)[:, :k]
            best_s = np.take_along_axis(score, best, axis=1)
            keep = best_s >= min_correlation
            found_i.append(np.broadcast_to(np.arange(start, stop)[:, None], best.shape)[keep])
            found_j.append(best[keep])
            found_s.append(best_s[keep])
    i, j, s = (np.concatenate(x) for x in (found_i, found_j, found_s))
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    # A pair found from both ends keeps the better of its two scores (equal but for rounding: each end's four
    # terms are the other end's, mirrored or transposed).
    order = np.lexsort((-s, hi, lo))  # by pair, best score first within a pair
    lo, hi, s = lo[order], hi[order], s[order]
    first = np.ones(len(lo), bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    lo, hi, s = lo[first], hi[first], s[first]
    order = np.lexsort((hi, lo, -s))  # best first; ties by (i, j)
    return [(int(a), int(b), float(c)) for a, b, c in zip(lo[order], hi[order], s[order])]
