"""The ensemble's recipe as one fit (`fit_recipe`), and its out-of-sample score by cross-fitting over folds.

    recipe = fit_recipe(calibrated_oof_by_backbone, y, "optimized", group_of, classes, aliases)
    test = recipe.predict(calibrated_test_by_backbone)
    held_out = cross_fit(raw_oof_by_backbone, calibrated_oof_by_backbone, fold_of_row, y, ...)

The recipe is everything the ensemble step fits on out-of-fold rows: backbone weights, then the post-processing
chosen among none ("flat"), one power on the flat ensemble ("tempered") and hierarchical tempering over
regroup's groups. Scoring it on the rows it was fitted on flatters it (weights overfit, and a post-processing
step never loses to the identity it contains), so the headline `ensemble_oof_logloss` comes from `cross_fit`:
for each fold k, every temperature, weight and exponent is fitted on the other folds' rows and fold k's rows
are scored. A held-out member's temperature is fitted on its backbone's other folds (its siblings' logits): its
own was fitted on the very rows being scored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from finegrain.metrics import log_loss
from finegrain.posthoc.ensembling import HierarchicalTempering, WeightedEnsemble
from finegrain.posthoc.prior_mix import PriorMix, class_prior


@dataclass
class Recipe:
    """A fitted ensemble recipe: backbone weights, then the chosen post-processing (None for flat)."""

    weights: WeightedEnsemble
    post_name: str  # "flat", "tempered" or "hierarchical"
    post: HierarchicalTempering | None
    # the choice's scores: flat in-sample, the others cross-fitted within the rows the recipe was fitted on
    candidates: dict[str, float]
    power: HierarchicalTempering
    hierarchical: HierarchicalTempering | None = None
    flat_oof: np.ndarray = field(repr=False, default=None)

    def predict(self, probs_by_backbone: Mapping[str, np.ndarray]) -> np.ndarray:
        """Ensemble probabilities, rows summing to 1."""
        p = self.weights.predict_proba(probs_by_backbone)
        if self.post is not None:
            p = self.post.transform(p)
        return p / p.sum(axis=1, keepdims=True)


def fit_recipe(
    probs_by_backbone: Mapping[str, np.ndarray],
    y: np.ndarray,
    method: str,
    group_of: np.ndarray | None,
    classes: Sequence[str],
    aliases: Mapping[str, str] | None,
) -> Recipe:
    """Fit weights on (probs_by_backbone, y), then choose the post-processing on cross-fitted LogLoss.

    group_of: regroup's group per class column, or None when hierarchical inference is not tried."""
    ens = WeightedEnsemble(method, classes=classes, aliases=aliases).fit(probs_by_backbone, y)
    flat = ens.predict_proba(probs_by_backbone)
    # Averaging calibrated members leaves the mixture under-confident, so a single power on the flat ensemble
    # (one group holding every class) is the baseline hierarchical tempering must beat; otherwise "hierarchical
    # helps" could be nothing but that global sharpening.
    power = HierarchicalTempering(np.zeros(len(classes), dtype=np.int64), classes, aliases).fit(flat, y)
    candidates = {"flat": (ens.oof_logloss_, None), "tempered": (power.cv_logloss_, power)}
    hier = None
    if group_of is not None:
        hier = HierarchicalTempering(group_of, classes=classes, aliases=aliases).fit(flat, y)
        candidates["hierarchical"] = (hier.cv_logloss_, hier)
    # Chosen on cross-fitted LogLoss (in-sample fits never lose to the identity they contain).
    chosen = min(candidates, key=lambda k: candidates[k][0])
    return Recipe(
        ens, chosen, candidates[chosen][1], {k: v[0] for k, v in candidates.items()}, power, hier, flat
    )


@dataclass
class CrossFit:
    """Out-of-sample predictions for every out-of-fold row, each from a recipe fitted on the other folds."""

    probs: np.ndarray  # the recipe's, prior mix included (eps chosen on the other folds' cross-fitted rows)
    uniform: np.ndarray  # equal backbone weights, no post-processing, no prior mix
    post_by_fold: dict[int, str]
    eps_by_fold: dict[int, float]
    unmixed: np.ndarray = field(repr=False, default=None)


def cross_fit(
    raw_by_backbone: Mapping[str, np.ndarray],
    calibrated_by_backbone: Mapping[str, np.ndarray],
    fold_of_row: np.ndarray,
    y: np.ndarray,
    make_scaler: Callable[[], object],
    method: str,
    group_of: np.ndarray | None,
    classes: Sequence[str],
    aliases: Mapping[str, str] | None,
) -> CrossFit:
    """For each fold k: fit temperatures, weights, post-processing and the prior mix on the rows of the other
    folds, predict fold k's rows.

    raw_by_backbone: each backbone's out-of-fold logits; calibrated_by_backbone: the same rows through each
    member's own calibration (fitted on its own fold, so legitimate on the training side only)."""
    y = np.asarray(y, dtype=np.int64)
    folds = np.unique(fold_of_row)
    if len(folds) < 2:
        raise ValueError(f"cross-fitting needs out-of-fold rows from at least 2 folds, got {folds.tolist()}")
    n, c = len(y), len(classes)
    unmixed, uniform = np.empty((n, c)), np.empty((n, c))
    post_by_fold: dict[int, str] = {}
    for k in folds:
        held, train = fold_of_row == k, fold_of_row != k
        held_probs = {
            b: make_scaler().fit(z[train], y[train]).transform(z[held]) for b, z in raw_by_backbone.items()
        }
        recipe = fit_recipe(
            {b: p[train] for b, p in calibrated_by_backbone.items()},
            y[train],
            method,
            group_of,
            classes,
            aliases,
        )
        unmixed[held] = recipe.predict(held_probs)
        uniform[held] = np.mean([held_probs[b] for b in sorted(held_probs)], axis=0)
        post_by_fold[int(k)] = recipe.post_name
    # The prior mix is fitted on cross-fitted rows (in-sample rows rarely show the confident mistakes it guards
    # against), and scored the same way: fold k's eps is chosen on the other folds' cross-fitted rows.
    probs, eps_by_fold = np.empty((n, c)), {}
    for k in folds:
        held = fold_of_row == k
        mix = PriorMix(classes=classes, aliases=aliases).fit(
            unmixed[~held], y[~held], class_prior(y[~held], c)
        )
        probs[held] = mix.transform(unmixed[held])
        eps_by_fold[int(k)] = mix.eps_
    return CrossFit(probs, uniform, post_by_fold, eps_by_fold, unmixed)


def scores(crossfit: CrossFit, y: np.ndarray, classes: Sequence[str], aliases) -> dict[str, float]:
    """The cross-fitted LogLosses: the recipe's (headline), without the prior mix, and with uniform weights."""
    return {
        "ensemble_oof_logloss": log_loss(y, crossfit.probs, classes, aliases),
        "ensemble_oof_logloss_unmixed": log_loss(y, crossfit.unmixed, classes, aliases),
        "uniform_oof_logloss": log_loss(y, crossfit.uniform, classes, aliases),
    }
