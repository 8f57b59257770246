"""Colours for the groups on the t-SNE map: neighbouring groups never share a colour while the palette allows.

A palette indexed by group number (tab20 cycled) gives two groups that sit side by side the same or a near-same
colour about as often as not, and at 100+ groups the map reads as noise. Here the groups' centroids on the map
form a nearest-neighbour graph, and a greedy colouring (most-connected groups first) gives each group a colour
none of its neighbours has, out of Kelly's 19 colours of maximum contrast (his white, black and grey left out:
grey is for the singletons).
"""

from __future__ import annotations

import numpy as np

# Kelly (1965), "Twenty-two colors of maximum contrast", less white, black and grey.
PALETTE = (
    "#F3C300", "#875692", "#F38400", "#A1CAF1", "#BE0032", "#C2B280", "#008856", "#E68FAC", "#0067A5",
    "#F99379", "#604E97", "#F6A600", "#B3446C", "#DCD300", "#882D17", "#8DB600", "#654522", "#E25822", "#2B3D26",
)  # fmt: skip
SINGLETON = "#D3D3D3"  # lightgrey: single-class groups recede so the multi-class ones stand out
NEIGHBOURS = 8


def centroids(xy: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Median map position of each class's points (NaN for a class with none)."""
    out = np.full((n_classes, 2), np.nan)
    for c in np.unique(labels):
        out[c] = np.median(xy[labels == c], axis=0)
    return out


def group_colours(centres: np.ndarray, multi: list[int]) -> dict[int, str]:
    """{group: CSS colour} for the multi-class groups at map positions `centres` (one row per group in `multi`)."""
    n = len(multi)
    if n == 0:
        return {}
    centres = np.nan_to_num(np.asarray(centres, dtype=np.float64))
    dist = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1)
    np.fill_diagonal(dist, np.inf)
    near = np.argsort(dist, axis=1)[:, : min(NEIGHBOURS, n - 1)]
    adjacent: list[set[int]] = [set() for _ in range(n)]
    for i, row in enumerate(near):
        for j in row.tolist():
            adjacent[i].add(j)
            adjacent[j].add(i)
    colour = np.full(n, -1)
    used = np.zeros(len(PALETTE), dtype=np.int64)
    for i in sorted(range(n), key=lambda k: (-len(adjacent[k]), k)):
        taken = [colour[j] for j in adjacent[i] if colour[j] >= 0]
        # Among the colours no neighbour has, the least used so far, so the whole palette shows; out of
        # colours (a crowded spot), the one its neighbours use least.
        free = [c for c in range(len(PALETTE)) if c not in taken]
        colour[i] = (
            min(free, key=lambda c: (used[c], c))
            if free
            else min(range(len(PALETTE)), key=lambda c: (taken.count(c), used[c], c))
        )
        used[colour[i]] += 1
    return {g: PALETTE[c] for g, c in zip(multi, colour.tolist())}
