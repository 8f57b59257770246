"""Ensemble step: weighted soft voting of calibrated members, optionally hierarchical over regroup's groups.

    finegrain ensemble --members out/train/a/fold0 ... --calibration out/calibrate --groups out/regroup \
        --manifest out/preprocess --out out/ensemble

Each train image has an out-of-fold prediction from exactly one fold model per backbone, so weights are fitted
per backbone on the backbones' stacked OOF rows (aligned by image_id). On test, the folds of a backbone are
averaged, then backbones combined with those weights, post-processed, and mixed with the class prior
(finegrain.posthoc.prior_mix: eps chosen on cross-fitted OOF LogLoss). The headline `ensemble_oof_logloss` is
cross-fitted over folds (finegrain.posthoc.crossfit); `ensemble_oof_logloss_in_sample` fits and scores the same
rows. Writes ensemble.json, test_probs.npz, oof_probs.npz (`probs` cross-fitted, `probs_in_sample`), report.md,
error_analysis.html (where the ensemble's cross-fitted OOF predictions go wrong, with thumbnails of the images
when given the preprocess manifest: finegrain.steps.error_page), summary.json and config.yaml.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np

from finegrain import storage
from finegrain.config import Config
from finegrain.data.layouts import nfc
from finegrain.metrics import log_loss, softmax
from finegrain.posthoc.calibration import make_scaler, scaler_from_dict
from finegrain.posthoc.crossfit import Recipe, cross_fit, fit_recipe, scores
from finegrain.posthoc.ensembling import METHODS, WeightedEnsemble, groups_to_index
from finegrain.posthoc.members import (
    align_backbone_oof,
    average_test_by_backbone,
    fold_of_rows,
    load_members,
    save_npz,
)
from finegrain.posthoc.prior_mix import PriorMix, class_prior
from finegrain.steps.error_page import PAGE, write_error_page
from finegrain.steps.outputs import write_step_files
from finegrain.tracking import Tracker


def _json_uri(prefix_or_file: str, name: str) -> str:
    return prefix_or_file if str(prefix_or_file).endswith(".json") else storage.join(prefix_or_file, name)


def load_calibration(calibration: str) -> tuple[str, dict]:
    """Read calibration.json (given its prefix or the file); returns its URI and {member_key: entry}."""
    uri = _json_uri(calibration, "calibration.json")
    try:
        table = json.loads(storage.read_text(uri))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{uri}: not valid JSON ({exc})") from exc
    return uri, {k: v for k, v in table.items() if isinstance(v, dict)}


def load_groups(groups: str, classes: list[str]) -> tuple[str, list[list[str]]]:
    """Read regroup's groups.json (prefix or file) and check its classes against the members' classes."""
    uri = _json_uri(groups, "groups.json")
    try:
        data = json.loads(storage.read_text(uri))
        raw = data["groups"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{uri}: expected {{'groups': [[class, ...], ...]}} ({exc})") from exc
    out = [[nfc(c) for c in g] for g in raw]
    try:
        groups_to_index(out, classes)
    except ValueError as exc:
        raise ValueError(f"{uri}: {exc}") from None
    return uri, out


def _report(result: dict) -> str:
    h, mix, cf = result["hierarchical"], result["prior_mix"], result["cross_fit"]
    lines = [
        "# Ensemble",
        "",
        (
            f"Method `{result['method']}`; ensemble OOF LogLoss **{result['ensemble_oof_logloss']:.5f}**, "
            f"cross-fitted over {cf['folds']} folds (each fold's rows scored by temperatures, weights, "
            f"post-processing and prior mix fitted on the other folds). Fitted and scored on the same rows it is "
            f"{result['ensemble_oof_logloss_in_sample']:.5f} (in-sample, optimistic). Uniform weights, "
            f"cross-fitted: {result['uniform_oof_logloss']:.5f}."
        ),
        "",
        (
            f"Prior mix: p = (1 - eps) p + eps prior with **eps = {mix['eps']:g}**, chosen from "
            f"{[float(e) for e in mix['oof_logloss_by_eps']]} on cross-fitted OOF LogLoss "
            f"({result['ensemble_oof_logloss_unmixed']:.5f} without it). Applied to the submission and the "
            f"registered model alike: a confident wrong answer costs at most "
            f"{result['prior_mix_max_cost']:.2f} nats instead of 34.5."
        ),
        "",
        "| backbone | weight | OOF LogLoss (calibrated, in-sample T) |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {b} | {w:.4f} | {result['backbone_oof_logloss'][b]:.5f} |" for b, w in result["weights"].items()
    ]
    lines += ["", "| weighting method | OOF LogLoss (in-sample) |", "|---|---:|"]
    lines += [f"| {k} | {v:.5f} |" for k, v in result["ensemble_oof_logloss_in_sample_by_method"].items()]
    lines += ["", "| member | OOF LogLoss raw | calibrated (in-sample T) |", "|---|---:|---:|"]
    raw = result["member_oof_logloss_uncalibrated"]
    lines += [f"| {k} | {raw[k]:.5f} | {v:.5f} |" for k, v in result["member_oof_logloss"].items()]
    lines += ["", "## Hierarchical inference", ""]
    if h["tried"]:
        lines.append(
            f"P(class) = P(group)^alpha P(class|group)^beta (renormalised), alpha={h['alpha']:.3f}, "
            f"beta={h['beta']:.3f} over {h['n_groups']} groups. OOF LogLoss flat {h['oof_logloss_flat']:.5f}, "
            f"flat with one fitted power {h['oof_logloss_flat_tempered']:.5f}, hierarchical "
            f"{h['oof_logloss_hier']:.5f} (both cross-fitted): **{'used' if h['used'] else 'not used'}**."
        )
    else:
        lines.append(f"Not tried: {h['reason']}.")
    t = result["post_tempering"]
    lines += [
        "",
        (
            f"Post-processing chosen: **{result['post_processing']}** (flat power {t['power']:.3f}, "
            f"cross-fitted OOF LogLoss {t['oof_logloss_cv']:.5f}); chosen per cross-fitted fold: "
            f"{cf['post_processing_by_fold']}, prior-mix eps per fold: {cf['prior_mix_eps_by_fold']}."
        ),
    ]
    return "\n".join(lines) + "\n"


def _post_records(
    recipe: Recipe, y, classes, aliases, groups_uri: str | None, reason: str | None
) -> tuple[dict, dict]:
    """ensemble.json's `hierarchical` and `post_tempering` entries for the full-data recipe."""
    power, model, flat = recipe.power, recipe.hierarchical, recipe.flat_oof
    tempering = {
        "power": power.beta_, "oof_logloss_cv": power.cv_logloss_,
        "oof_logloss_in_sample": log_loss(y, power.transform(flat), classes, aliases),
        "used": recipe.post_name == "tempered",
    }  # fmt: skip
    hier: dict = {"tried": model is not None, "used": recipe.post_name == "hierarchical",
                  "oof_logloss_flat": recipe.candidates["flat"], "oof_logloss_hier": None}  # fmt: skip
    if model is None:
        hier["reason"] = reason
    else:
        hier.update(
            oof_logloss_hier=model.cv_logloss_, oof_logloss_flat_tempered=power.cv_logloss_,
            oof_logloss_hier_in_sample=log_loss(y, model.transform(flat), classes, aliases),
            alpha=model.alpha_, beta=model.beta_, n_groups=int(model.group_of.max()) + 1, groups=groups_uri,
        )  # fmt: skip
    return hier, tempering


def run(
    cfg: Config,
    members: list[str],
    calibration: str,
    out: str,
    groups: str | None = None,
    parent_run_id: str | None = None,
    manifest: str | None = None,
) -> dict:
    """Calibrate members, fit backbone weights on OOF, optionally add hierarchical tempering, mix with the class
    prior; score the whole recipe cross-fitted over folds; write outputs.

    groups: regroup's output (hierarchical inference, and context on the error page); manifest: preprocess's
    output, for the error page's thumbnails."""
    loaded = load_members(members)
    classes = loaded[0].classes
    aliases = cfg.data.aliases or None
    groups_uri, group_lists = load_groups(groups, classes) if groups else (None, None)
    cal_uri, table = load_calibration(calibration)
    oof_p, test_p, raw_ll, cal_ll = {}, {}, {}, {}
    for m in loaded:
        if m.key not in table:
            raise ValueError(f"{cal_uri}: no temperature for member {m.key!r} (has {sorted(table)})")
        scaler = scaler_from_dict(table[m.key], where=f"{cal_uri}[{m.key}]")
        oof_p[m.key], test_p[m.key] = scaler.transform(m.oof_logits), scaler.transform(m.test_logits)
        raw_ll[m.key] = log_loss(m.oof_labels, softmax(m.oof_logits), classes, aliases)
        cal_ll[m.key] = log_loss(m.oof_labels, oof_p[m.key], classes, aliases)

    ids, y, oof_by_backbone = align_backbone_oof(loaded, oof_p)
    _, _, raw_by_backbone = align_backbone_oof(loaded, {m.key: m.oof_logits for m in loaded})
    test_ids, test_by_backbone = average_test_by_backbone(loaded, test_p)
    reason = None if cfg.ensemble.hierarchical and groups else (
        "ensemble.hierarchical is false" if not cfg.ensemble.hierarchical else "no groups given (--groups)")  # fmt: skip
    group_of = groups_to_index(group_lists, classes) if reason is None else None
    recipe = fit_recipe(oof_by_backbone, y, cfg.ensemble.method, group_of, classes, aliases)
    # every weighting method's in-sample score, for the report; the configured one is the recipe's own fit
    in_sample_by_method = {
        method: (
            recipe.weights if method == cfg.ensemble.method
            else WeightedEnsemble(method, classes=classes, aliases=aliases).fit(oof_by_backbone, y)
        ).oof_logloss_
        for method in METHODS
    }  # fmt: skip
    crossfit = cross_fit(
        raw_by_backbone, oof_by_backbone, fold_of_rows(loaded, ids), y,
        lambda: make_scaler(cfg.calibrate.method, cfg.calibrate.n_temperature_bins),
        cfg.ensemble.method, group_of, classes, aliases,
    )  # fmt: skip
    # eps for the submission: chosen on every cross-fitted row (the in-sample rows rarely show the confident
    # mistakes the mix guards against), then applied to the full-data recipe's test probabilities.
    mix = PriorMix(classes=classes, aliases=aliases).fit(crossfit.unmixed, y, class_prior(y, len(classes)))
    oof_in_sample, test_final = (
        mix.transform(recipe.predict(oof_by_backbone)),
        mix.transform(recipe.predict(test_by_backbone)),
    )
    hier, tempering = _post_records(recipe, y, classes, aliases, groups_uri, reason)

    n_folds = defaultdict(int)
    for m in loaded:
        n_folds[m.backbone] += 1
    ens = recipe.weights
    result = {
        "method": cfg.ensemble.method,
        "weights": ens.weights_,
        "member_weights": {m.key: ens.weights_[m.backbone] / n_folds[m.backbone] for m in loaded},
        "member_oof_logloss": cal_ll,
        "member_oof_logloss_uncalibrated": raw_ll,
        "backbone_oof_logloss": ens.member_logloss_,
        **scores(crossfit, y, classes, aliases),
        "ensemble_oof_logloss_in_sample": log_loss(y, oof_in_sample, classes, aliases),
        "ensemble_oof_logloss_in_sample_by_method": in_sample_by_method,
        "uniform_oof_logloss_in_sample": ens.uniform_logloss_,
        "prior_mix": mix.to_dict(),
        "prior_mix_eps": mix.eps_,
        "prior_mix_max_cost": float(-np.log(mix.eps_ * mix.prior_.min() / mix.prior_.sum())),
        "cross_fit": {
            "folds": len(crossfit.post_by_fold),
            "post_processing_by_fold": crossfit.post_by_fold,
            "prior_mix_eps_by_fold": crossfit.eps_by_fold,
        },
        "hierarchical": hier,
        "post_tempering": tempering,
        "post_processing": recipe.post_name,
        "calibration": cal_uri,
        "n_oof": len(y),
        "n_test": len(test_ids),
        "n_classes": len(classes),
    }
    summary = {
        "ensemble": storage.join(out, "ensemble.json"),
        **{k: result[k] for k in SUMMARY_KEYS},
        "hierarchical_used": hier["used"],
    }
    with storage.output_dir(out) as local:
        (local / "ensemble.json").write_text(
            json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8"
        )
        save_npz(str(local / "test_probs.npz"), image_id=test_ids, probs=test_final, classes=classes)
        save_npz(str(local / "oof_probs.npz"), image_id=ids, probs=crossfit.probs, probs_in_sample=oof_in_sample,
                 labels=y, classes=classes)  # fmt: skip
        (local / "report.md").write_text(_report(result), encoding="utf-8")
        errors = write_error_page(local, crossfit.probs, y, ids, classes, group_lists, aliases, manifest)
        summary["ensemble_oof_accuracy"] = errors.accuracy
        write_step_files(local, cfg, summary)
        with Tracker(cfg.tracking, "ensemble", parent_run_id=parent_run_id, local_dir=out) as tracker:
            tracker.log_params({"ensemble": cfg.ensemble.model_dump(), "members": [m.key for m in loaded]})
            metrics = {k: v for k, v in summary.items() if isinstance(v, float)}
            metrics.update({f"weight.{b}": w for b, w in ens.weights_.items()})
            metrics.update({f"in_sample_oof_logloss.{k}": v for k, v in in_sample_by_method.items()})
            metrics["hierarchical_used"] = float(hier["used"])
            tracker.log_metrics(metrics)
            for name in ("ensemble.json", "report.md", PAGE):
                tracker.log_artifact(local / name)
    return summary


# What summary.json, MLflow and the KFP Metrics artifact carry: the headline beside what it is compared with.
SUMMARY_KEYS = (
    "method", "weights", "ensemble_oof_logloss", "ensemble_oof_logloss_in_sample", "uniform_oof_logloss",
    "prior_mix_eps",
)  # fmt: skip
