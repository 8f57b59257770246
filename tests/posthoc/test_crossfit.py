"""Cross-fitting the ensemble recipe over folds, and the prior mix that bounds a confident mistake's cost."""

from __future__ import annotations

import math

import numpy as np
import pytest

from finegrain.metrics import log_loss, per_image_log_loss, softmax
from finegrain.posthoc.calibration import TemperatureScaler
from finegrain.posthoc.crossfit import cross_fit, fit_recipe, scores
from finegrain.posthoc.members import fold_of_rows, load_members
from finegrain.posthoc.prior_mix import EPS_GRID, PriorMix, class_prior, mix_with_prior
from tests.support.synthetic_members import make_members


def _noise_backbones(n: int = 90, c: int = 4, backbones: int = 8, folds: int = 3, seed: int = 0):
    """Backbones whose logits carry no information about the label: any fitted gain is overfitting."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    fold_of_row = np.arange(n) % folds
    raw = {f"b{i}": 3.0 * rng.normal(size=(n, c)) for i in range(backbones)}
    # each member's own temperature, fitted on its own fold's rows (what the calibrate step does)
    calibrated = {}
    for b, z in raw.items():
        calibrated[b] = np.empty((n, c))
        for k in range(folds):
            rows = fold_of_row == k
            calibrated[b][rows] = TemperatureScaler().fit(z[rows], y[rows]).transform(z[rows])
    return raw, calibrated, fold_of_row, y, [f"c{i}" for i in range(c)]


def test_cross_fitted_headline_is_not_the_in_sample_fit_when_weights_overfit() -> None:
    raw, calibrated, fold_of_row, y, classes = _noise_backbones()
    recipe = fit_recipe(calibrated, y, "optimized", None, classes, None)
    in_sample = log_loss(y, recipe.predict(calibrated))
    crossfit = cross_fit(raw, calibrated, fold_of_row, y, TemperatureScaler, "optimized", None, classes, None)
    headline = scores(crossfit, y, classes, None)["ensemble_oof_logloss"]
    # Fitted and scored on the same rows, noise "beats" the uniform distribution; held out, it cannot.
    assert in_sample < math.log(4) - 0.02
    assert headline > math.log(4) - 0.01
    assert headline > in_sample + 0.03


def test_cross_fit_scores_each_fold_with_a_recipe_that_never_saw_it() -> None:
    raw, calibrated, fold_of_row, y, classes = _noise_backbones()
    crossfit = cross_fit(raw, calibrated, fold_of_row, y, TemperatureScaler, "uniform", None, classes, None)
    # Change fold 0's labels: its rows are predicted by recipes fitted on folds 1 and 2 alone, so they must not move.
    y2 = y.copy()
    y2[fold_of_row == 0] = (y2[fold_of_row == 0] + 1) % 4
    again = cross_fit(raw, calibrated, fold_of_row, y2, TemperatureScaler, "uniform", None, classes, None)
    held = fold_of_row == 0
    np.testing.assert_allclose(again.unmixed[held], crossfit.unmixed[held])
    np.testing.assert_allclose(again.uniform[held], crossfit.uniform[held])
    with pytest.raises(ValueError, match="at least 2 folds"):
        cross_fit(
            raw, calibrated, np.zeros(len(y), int), y, TemperatureScaler, "uniform", None, classes, None
        )


def test_fold_of_rows_requires_the_same_folds_for_every_backbone(tmp_path) -> None:
    a = load_members(make_members(tmp_path / "a", backbones=("a",), folds=2, seed=0))
    b = load_members(make_members(tmp_path / "b", backbones=("b",), folds=2, seed=1))  # other fold assignment
    ids = np.sort(np.concatenate([m.oof_ids for m in a]))
    folds = fold_of_rows(a, ids)
    assert set(folds.tolist()) == {0, 1}
    for m in a:
        assert np.all(folds[np.searchsorted(ids, m.oof_ids)] == m.fold)
    with pytest.raises(ValueError, match="same folds"):
        fold_of_rows(a + b, ids)


def test_a_confident_wrong_test_row_costs_at_most_minus_log_eps_prior() -> None:
    rng = np.random.default_rng(1)
    n, c = 400, 5
    y = rng.integers(0, c, n)
    # A member that fits its out-of-fold rows almost perfectly and is sure of itself, but 2% of the time it is
    # confidently wrong (what cross-fitted rows show and in-sample ones hide).
    logits = 60.0 * np.eye(c)[y]
    wrong = rng.random(n) < 0.02
    logits[wrong] = 60.0 * np.eye(c)[(y[wrong] + 1) % c]
    oof = softmax(logits)
    prior = class_prior(y, c)
    mix = PriorMix().fit(oof, y, prior)
    assert mix.eps_ > min(EPS_GRID) and mix.eps_ in EPS_GRID
    assert log_loss(y, mix.transform(oof)) < log_loss(y, oof)
    # a test row whose true class got 1e-50
    test = np.full((1, c), 1e-50)
    test[0, 1] = 1.0
    cost = per_image_log_loss([0], mix.transform(test))[0]
    assert per_image_log_loss([0], test)[0] > 34  # the metric's clip: 34.5 nats
    assert cost <= -math.log(mix.eps_ * prior[0]) + 1e-9
    # even the smallest eps bounds the cost far below the clip
    assert -math.log(min(EPS_GRID) * prior.min()) < 12


def test_prior_mix_round_trips_and_refuses_what_would_not_protect() -> None:
    y = np.array([0, 1, 1, 2])
    mix = PriorMix().fit(softmax(np.eye(3)[y] * 5), y, class_prior(y, 3))
    again = PriorMix.from_dict(mix.to_dict())
    probs = softmax(np.random.default_rng(0).normal(size=(6, 3)))
    np.testing.assert_allclose(again.transform(probs), mix.transform(probs))
    np.testing.assert_allclose(mix_with_prior(probs, 0.1, [1, 1, 1]).sum(1), 1.0)
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        PriorMix(grid=(0.0, 0.01)).fit(probs[:4], y, class_prior(y, 3))
    with pytest.raises(ValueError, match="prior_mix"):
        PriorMix.from_dict({"eps": 0.01, "prior": [0.5, 0.0, 0.5]})
    with pytest.raises(ValueError, match="3 classes"):
        mix_with_prior(probs, 0.1, [0.5, 0.5])
