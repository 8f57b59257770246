"""Duplicate groups from pairwise links, and the manifest's hex spelling of 64-bit pHashes.

    groups = connected_groups(n, pairs)   # connected components; -1 for rows in no group
    text = hash_hex(value)                # 16 lowercase hex digits
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def hash_hex(value: int) -> str:
    """A 64-bit hash as 16 lowercase hex digits (the manifest's phash column)."""
    return f"{int(value) & 0xFFFFFFFFFFFFFFFF:016x}"


def hex_to_hash(text: str) -> int:
    return int(text, 16)


def connected_groups(n: int, pairs: np.ndarray | list[tuple[int, int]]) -> np.ndarray:
    """Group ids for n items linked by pairs: 0.. in order of each group's first item; -1 = alone."""
    edges = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    grouped = np.bincount(component, minlength=n)[component] > 1
    # scipy numbers components in its own order; renumber by first item so ids are stable and readable.
    firsts, first_item = np.unique(component[grouped], return_index=True)
    new_id = np.empty(n, dtype=np.int64)
    new_id[firsts[np.argsort(first_item)]] = np.arange(len(firsts))
    out = np.full(n, -1, dtype=np.int64)
    out[grouped] = new_id[component[grouped]]
    return out
