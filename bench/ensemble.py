"""Benchmark the ensemble step's fitting: the recipe fitted once in-sample vs cross-fitted over the folds.

    python bench/ensemble.py                                   # 33,264 OOF rows x 396 classes, 2 backbones, 5 folds
    python bench/ensemble.py --classes 30 --per-class 20       # smoke run, seconds

The ensemble step fits its recipe (backbone weights, then a flat power or hierarchical tempering chosen on
cross-fitted LogLoss) once on every out-of-fold row, and, for its headline `ensemble_oof_logloss`, once more
per fold on the other folds' rows (finegrain.posthoc.crossfit). This prints both times, in the same run on the
same data, and their ratio, with the in-sample and the cross-fitted LogLoss. The members are synthetic:
over-confident noisy one-hot logits with confusions inside planted groups of 3 classes, as at Hecto's size.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from finegrain.metrics import log_loss
from finegrain.posthoc.calibration import TemperatureScaler
from finegrain.posthoc.crossfit import cross_fit, fit_recipe, scores


def synthetic_backbone(y: np.ndarray, c: int, signal: float, rng: np.random.Generator) -> np.ndarray:
    """Over-confident logits (x3) of a noisy observation with `signal` on the true class and 1.5 on its group."""
    group = np.arange(c) // 3
    means = signal * np.eye(c) + 1.5 * (group[:, None] == group[None, :])
    return 3.0 * (means[y] + rng.normal(size=(len(y), c))) @ means


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=396)
    ap.add_argument("--per-class", type=int, default=84)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--backbones", type=int, default=2)
    ap.add_argument("--method", default="optimized")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    c = args.classes
    y = np.repeat(np.arange(c), args.per_class)
    fold_of_row = rng.permutation(len(y)) % args.folds
    classes = [f"class_{i:03d}" for i in range(c)]
    group_of = np.arange(c) // 3
    raw, calibrated = {}, {}
    for b in range(args.backbones):
        z = synthetic_backbone(y, c, 1.6 / (1 + 0.35 * b), rng)
        raw[f"b{b}"], calibrated[f"b{b}"] = z, np.empty_like(z)
        for k in range(args.folds):  # each member's own temperature, as the calibrate step fits it
            rows = fold_of_row == k
            calibrated[f"b{b}"][rows] = TemperatureScaler().fit(z[rows], y[rows]).transform(z[rows])
    print(f"{len(y)} OOF rows x {c} classes, {args.backbones} backbones, {args.folds} folds, {args.method}")

    start = time.perf_counter()
    recipe = fit_recipe(calibrated, y, args.method, group_of, classes, None)
    in_sample_s = time.perf_counter() - start
    in_sample = log_loss(y, recipe.predict(calibrated))
    start = time.perf_counter()
    crossfit = cross_fit(
        raw, calibrated, fold_of_row, y, TemperatureScaler, args.method, group_of, classes, None
    )
    cross_s = time.perf_counter() - start
    cv = scores(crossfit, y, classes, None)
    print(f"recipe fitted once (in-sample):   {in_sample_s:7.1f} s   OOF LogLoss {in_sample:.4f}")
    print(
        f"cross-fitted over {args.folds} folds:       {cross_s:7.1f} s   OOF LogLoss {cv['ensemble_oof_logloss']:.4f} "
        f"(without the prior mix {cv['ensemble_oof_logloss_unmixed']:.4f}; eps per fold {crossfit.eps_by_fold})"
    )
    print(f"cross-fitting / in-sample fit: {cross_s / max(in_sample_s, 1e-9):.2f}x the time")


if __name__ == "__main__":
    main()
