"""Error analysis of OOF predictions: confused pairs, per-class scores and worst images, in the metric's view."""

from __future__ import annotations

import numpy as np
import pytest

from finegrain.metrics import log_loss
from finegrain.posthoc.error_analysis import PAIR_EXAMPLES, analyse_errors
from tests.support.synthetic_members import synthetic_logits

CLASSES = ["a", "b", "c"]


def _probs(rows: list[list[float]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float64)


def test_pairs_classes_and_worst_images_of_a_small_case():
    # a: 3 images, one taken for b; b: 2 images, both right; c: 2 images, both taken for a
    probs = _probs([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.3, 0.6, 0.1],
                    [0.1, 0.8, 0.1], [0.2, 0.7, 0.1],
                    [0.5, 0.1, 0.4], [0.9, 0.05, 0.05]])  # fmt: skip
    labels = np.array([0, 0, 0, 1, 1, 2, 2])
    ids = [f"img{i}" for i in range(7)]
    e = analyse_errors(probs, labels, ids, CLASSES, groups=[["a", "c"], ["b"]])
    assert e.n_images == 7 and e.accuracy == pytest.approx(4 / 7)
    assert e.log_loss == pytest.approx(log_loss(labels, probs))
    pairs = e.pairs.to_dict("records")
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [("c", "a", 2), ("a", "b", 1)]
    assert pairs[0]["examples"] == ["img6", "img5"]  # worst first: p(c) 0.05 before 0.4
    assert pairs[0]["references"] == ["img0", "img1"]  # images of a it gets right, surest first
    assert pairs[0]["same_group"] and not pairs[1]["same_group"]
    assert pairs[0]["share_of_true"] == pytest.approx(1.0)
    per = e.per_class.set_index("class")
    assert per.loc["a", "accuracy"] == pytest.approx(2 / 3) and per.loc["b", "accuracy"] == 1.0
    assert per.loc["c", "taken_for"] == "a" and per.loc["c", "taken_for_count"] == 2
    assert per.loc["b", "taken_for"] == "" and per.loc["b", "group"] == -1 and per.loc["a", "group"] == 0
    assert per.loc["c", "logloss"] == pytest.approx(-(np.log(0.4) + np.log(0.05)) / 2)
    assert e.worst["image_id"].tolist()[:2] == ["img6", "img2"]  # p(true) 0.05, then 0.2
    assert e.worst["logloss"].is_monotonic_decreasing
    assert e.groups == {0: ["a", "c"]}  # numbered as in groups.json; singletons are no context


def test_alias_columns_are_one_class_as_the_metric_scores_them():
    probs = _probs([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])  # both images of "a"; one predicted as its alias "b"
    labels = np.array([0, 0])
    e = analyse_errors(probs, labels, ["x", "y"], CLASSES, aliases={"b": "a"})
    assert e.classes == ["a", "c"] and e.accuracy == 1.0 and e.pairs.empty
    assert e.log_loss == pytest.approx(log_loss(labels, probs, CLASSES, {"b": "a"}))


def test_stays_small_and_fast_at_400_classes():
    rng = np.random.default_rng(0)
    n_classes, y = 396, np.repeat(np.arange(396), 20)
    probs = np.exp(synthetic_logits(y, n_classes, rng, 1.2, overconfidence=1.0))
    e = analyse_errors(probs, y, [f"i{k}" for k in range(len(y))], [f"c{k}" for k in range(n_classes)])
    assert len(e.pairs) == 60 and len(e.worst) == 60 and len(e.per_class) == n_classes
    assert all(len(x) <= PAIR_EXAMPLES for x in e.pairs["examples"])
    assert e.pairs["count"].is_monotonic_decreasing
