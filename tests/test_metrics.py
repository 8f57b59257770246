"""finegrain.metrics: LogLoss against sklearn, alias merging, clipping, ECE on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss

from finegrain.metrics import (
    accuracy,
    ece,
    log_loss,
    merge_alias_columns,
    reliability_bins,
    softmax,
    tempered_log_loss,
)


@pytest.mark.parametrize("seed", range(5))
def test_log_loss_matches_sklearn_on_unnormalised_rows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, c = 50, 7
    raw = rng.gamma(0.5, size=(n, c)) * rng.uniform(0.1, 10, size=(n, 1))  # rows do not sum to 1
    y = rng.integers(0, c, size=n)
    expected = sk_log_loss(y, raw / raw.sum(axis=1, keepdims=True), labels=np.arange(c))
    assert log_loss(y, raw) == pytest.approx(expected, rel=1e-9)


def test_log_loss_accepts_class_names() -> None:
    classes = ["가", "나", "다"]
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert log_loss(["가", "다"], p, classes=classes) == pytest.approx(-(math.log(0.7) + math.log(0.8)) / 2)
    with pytest.raises(ValueError, match="not among the classes"):
        log_loss(["라", "가"], p, classes=classes)


def test_alias_pair_scores_as_one_class() -> None:
    classes = ["a", "a_alias", "b"]
    aliases = {"a_alias": "a"}
    split = np.array([[0.3, 0.3, 0.4], [0.3, 0.3, 0.4]])
    lumped = np.array([[0.6, 0.0, 0.4], [0.0, 0.6, 0.4]])
    y = np.array([0, 1])  # one row labelled with the canonical name, one with the alias
    assert log_loss(y, split, classes, aliases) == pytest.approx(-math.log(0.6))
    assert log_loss(y, lumped, classes, aliases) == pytest.approx(-math.log(0.6))
    # Without the alias declaration the split prediction is punished.
    assert log_loss(y, split, classes) == pytest.approx(-math.log(0.3))
    merged, names, to_col = merge_alias_columns(split, classes, aliases)
    assert names == ["a", "b"] and to_col == {"a": 0, "a_alias": 0, "b": 1}
    np.testing.assert_allclose(merged, [[0.6, 0.4], [0.6, 0.4]])


def test_zero_probability_is_clipped_to_finite_loss() -> None:
    p = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert log_loss([1, 1], p) == pytest.approx(-math.log(1e-15))
    assert log_loss([0, 0], p) == pytest.approx(-math.log(1 - 1e-15))


def test_log_loss_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="2-D"):
        log_loss([0], np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="labels for"):
        log_loss([0, 1], np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="NaN"):
        log_loss([0], np.array([[np.nan, 0.5]]))


def test_ece_known_values() -> None:
    # Two rows at confidence 0.9 (one right, one wrong) and two at 0.6 (both right), 10 bins:
    # |0.5 - 0.9| * 2/4 + |1.0 - 0.6| * 2/4 = 0.4
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 1, 0, 1])
    assert ece(y, p, n_bins=10) == pytest.approx(0.4)
    # Perfectly calibrated: all at confidence 1.0 and all right.
    assert ece(np.array([0, 1]), np.eye(2), n_bins=10) == pytest.approx(0.0)
    b = reliability_bins(y, p, n_bins=10)
    assert b["count"].sum() == 4 and b["count"][8] == 2 and b["count"][5] == 2


def test_softmax_is_stable_and_tempered() -> None:
    z = np.array([[1000.0, 0.0], [0.0, 0.0]])
    p = softmax(z)
    assert np.all(np.isfinite(p)) and p[0, 0] == pytest.approx(1.0) and p[1, 0] == pytest.approx(0.5)
    np.testing.assert_allclose(
        softmax(np.array([[2.0, 0.0]]), temperature=2.0), softmax(np.array([[1.0, 0.0]]))
    )


def test_tempered_log_loss_reads_a_margin_head_as_the_classifier_it_is() -> None:
    # s * cos logits (s = 64) of a head that ranks the true class first ~70% of the time: its raw softmax is
    # near one-hot, so every miss costs tens of nats and the raw LogLoss is worse than uniform (log 10 = 2.30).
    rng = np.random.default_rng(0)
    n, c = 600, 10
    y = rng.integers(0, c, n)
    cos = 0.3 + 0.15 * rng.normal(size=(n, c))
    cos[np.arange(n), y] += 0.3
    logits = 64.0 * cos
    raw = log_loss(y, softmax(logits))
    tempered, temperature = tempered_log_loss(y, logits)
    assert 0.5 < accuracy(y, logits) < 0.95
    assert raw > math.log(c) and tempered < math.log(c) < raw
    assert temperature > 1  # it undoes over-confidence; argmax (accuracy) is unchanged by construction
    assert tempered == pytest.approx(log_loss(y, softmax(logits, temperature)))
