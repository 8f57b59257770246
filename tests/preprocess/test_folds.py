"""Folds keep groups together, balance every class within one image of ideal, and are seed-deterministic."""

from __future__ import annotations

from collections import Counter

import numpy as np

from finegrain.preprocess.folds import assign_folds, fold_balance


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = [f"c{int(c)}" for c in rng.integers(0, 12, 500)]
    groups = [-1] * len(labels)
    for g in range(20):  # some multi-row groups, a few spanning classes
        for i in rng.choice(len(labels), int(rng.integers(2, 4)), replace=False):
            groups[int(i)] = g
    return labels, groups


def test_groups_stay_together_and_balance_within_one() -> None:
    labels, groups = _data()
    folds, _ = assign_folds(labels, groups, n_folds=5, seed=3)
    assert set(folds.tolist()) == set(range(5))
    for g in set(groups) - {-1}:
        assert len({int(folds[i]) for i in range(len(labels)) if groups[i] == g}) == 1
    # Singleton-only assignment: every class within one image of ideal in every fold.
    folds2, _ = assign_folds(labels, [-1] * len(labels), n_folds=5, seed=3)
    balance = fold_balance(labels, folds2, 5)
    assert (balance["max_dev"] < 1.0).all()
    sizes = Counter(folds2.tolist())
    assert max(sizes.values()) - min(sizes.values()) <= 1


def test_deterministic_and_seed_dependent() -> None:
    labels, groups = _data(1)
    a, _ = assign_folds(labels, groups, 4, seed=42)
    b, _ = assign_folds(labels, groups, 4, seed=42)
    c, _ = assign_folds(labels, groups, 4, seed=7)
    assert (a == b).all() and (a != c).any()


def test_small_class_warns_but_keeps_all_images() -> None:
    labels = ["big"] * 20 + ["tiny"] * 2
    folds, warnings = assign_folds(labels, [-1] * 22, n_folds=5, seed=0)
    assert (folds >= 0).all()
    assert len(warnings) == 1 and "tiny" in warnings[0]
    assert len({int(f) for f, lbl in zip(folds, labels) if lbl == "tiny"}) == 2
