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

import numpy as np

_BLOCK = 2048  # rows of the similarity matrix held at a time (2048 x 33k float32: 270 MB)


def candidate_pairs(
    features: np.ndarray, min_correlation: float, neighbours: int
) -> list[tuple[int, int, float]]:
    """(i, j, score) with i < j, unique, sorted by score (best first); features from normalize.tiny_features."""
    n = len(features)
    if n < 2 or neighbours < 1:
        return []
    whole, inner = np.ascontiguousarray(features[:, 0]), np.ascontiguousarray(features[:, 2])
    found: dict[tuple[int, int], float] = {}
    k = min(neighbours, n - 1)
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
        for r, cols in enumerate(best):
            i = start + r
            for j in cols.tolist():
                s = float(score[r, j])
                if s >= min_correlation:
                    key = (min(i, j), max(i, j))
                    found[key] = max(found.get(key, -1.0), s)
    return sorted(((i, j, s) for (i, j), s in found.items()), key=lambda t: (-t[2], t[0], t[1]))
