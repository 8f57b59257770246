"""Stratified, group-aware K-fold assignment: every group in one fold, each class spread within one image of ideal.

    folds, warnings = assign_folds(labels, groups, n_folds=5, seed=42)

A deterministic greedy (not sklearn's StratifiedGroupKFold, whose balance for singleton groups is looser and whose
result depends on the library version): multi-row groups are placed first, largest first, in the fold where they
overflow their classes' per-fold quota least; then the remaining rows of each class go one by one to the fold
holding the fewest of that class (ties: the fold with fewest rows overall, then a seeded fold order). With only
singleton groups this puts every class within one image of its ideal count per fold, and keeps fold sizes within
one of each other. A class with fewer rows than folds is warned about and all its rows are still assigned.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
import pandas as pd


def assign_folds(
    labels: Sequence[str], groups: Sequence[int], n_folds: int, seed: int
) -> tuple[np.ndarray, list[str]]:
    """Fold (0..n_folds-1) per row; rows with the same group id >= 0 share a fold. Returns (folds, warnings).

    labels: class of each row. groups: group id per row, -1 for a row in no group.
    """
    labels = [str(x) for x in labels]
    groups = [int(g) for g in groups]
    if len(labels) != len(groups):
        raise ValueError(f"assign_folds: {len(labels)} labels but {len(groups)} group ids")
    if n_folds < 2:
        raise ValueError(f"assign_folds: need at least 2 folds, got {n_folds}")
    rng = np.random.default_rng(seed)
    rank = {f: r for r, f in enumerate(rng.permutation(n_folds).tolist())}  # seeded tie-break between folds
    sizes = Counter(labels)
    quota = {c: math.ceil(n / n_folds) for c, n in sizes.items()}
    count: dict[str, list[int]] = {c: [0] * n_folds for c in sizes}
    total = [0] * n_folds
    folds = np.full(len(labels), -1, dtype=np.int64)

    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        if g >= 0:
            members[g].append(i)
    multi = [rows for rows in members.values() if len(rows) > 1]
    # Largest first; equal sizes in a seeded order so no class systematically gets the best folds.
    order = rng.permutation(len(multi)).tolist()
    multi = [multi[k] for k in sorted(range(len(multi)), key=lambda k: (-len(multi[k]), order[k]))]
    for rows in multi:
        need = Counter(labels[i] for i in rows)

        def cost(f: int, need: Counter = need) -> tuple:
            overflow = sum(max(0, count[c][f] + k - quota[c]) for c, k in need.items())
            return overflow, sum(count[c][f] for c in need), total[f], rank[f]

        best = min(range(n_folds), key=cost)
        for i in rows:
            folds[i] = best
            count[labels[i]][best] += 1
            total[best] += 1

    by_class: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        if folds[i] < 0:
            by_class[label].append(i)
    for label in sorted(by_class):
        rows = by_class[label]
        for k in rng.permutation(len(rows)).tolist():
            best = min(range(n_folds), key=lambda f: (count[label][f], total[f], rank[f]))
            folds[rows[k]] = best
            count[label][best] += 1
            total[best] += 1

    warnings = [
        f"class {c!r} has {n} training image(s), fewer than {n_folds} folds: it is missing from the validation "
        f"set of {n_folds - n} fold(s) (all its images are still used for training)"
        for c, n in sorted(sizes.items())
        if n < n_folds
    ]
    return folds, warnings


def fold_balance(labels: Sequence[str], folds: Sequence[int], n_folds: int) -> pd.DataFrame:
    """Rows per class and fold (columns fold0..), with the ideal count and the worst deviation from it."""
    table = pd.crosstab(pd.Series(list(labels), name="class"), pd.Series(list(folds), name="fold"))
    table = table.reindex(columns=range(n_folds), fill_value=0)
    table.columns = [f"fold{f}" for f in range(n_folds)]
    n = table.sum(axis=1)
    table["ideal"] = (n / n_folds).round(2)
    table["max_dev"] = table[[f"fold{f}" for f in range(n_folds)]].sub(n / n_folds, axis=0).abs().max(axis=1).round(2)
    return table
