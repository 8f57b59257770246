"""Ensemble step: weighted soft voting of calibrated members, optionally hierarchical over regroup's groups.

    finegrain ensemble --members out/train/a/fold0 ... --calibration out/calibrate --groups out/regroup \
        --manifest out/preprocess --out out/ensemble

Each train image has an out-of-fold prediction from exactly one fold model per backbone, so weights are fitted
per backbone on the backbones' stacked OOF rows (aligned by image_id). On test, the folds of a backbone are
averaged, then backbones combined with those weights. Writes ensemble.json, test_probs.npz, oof_probs.npz,
report.md, error_analysis.html (where the ensemble's OOF predictions go wrong, with thumbnails of the images when
given the preprocess manifest: finegrain.steps.error_page), summary.json and config.yaml.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np

from finegrain import storage
from finegrain.config import Config
from finegrain.data.layouts import nfc
from finegrain.metrics import log_loss, softmax
from finegrain.posthoc.calibration import scaler_from_dict
from finegrain.posthoc.ensembling import METHODS, HierarchicalTempering, WeightedEnsemble, groups_to_index
from finegrain.posthoc.members import Member, load_members, save_npz
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


def align_backbone_oof(
    members: list[Member], probs: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Stack each backbone's folds' OOF rows and align backbones by image_id.

    Returns (image_ids sorted, labels, {backbone: probs [n, C]}). Errors if a backbone's folds overlap or if
    backbones do not cover the same images with the same labels.
    """
    by_backbone: dict[str, list[Member]] = defaultdict(list)
    for m in members:
        by_backbone[m.backbone].append(m)
    ref_ids = ref_labels = ref_name = None
    stacked: dict[str, np.ndarray] = {}
    for backbone, ms in sorted(by_backbone.items()):
        ids = np.concatenate([m.oof_ids for m in ms])
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(
                f"backbone {backbone!r}: image_id {uniq[counts > 1][0]!r} is in the OOF rows of more than one fold "
                f"({[m.key for m in ms]}); each train image must be out-of-fold for exactly one fold"
            )
        order = np.argsort(ids)
        labels = np.concatenate([m.oof_labels for m in ms])[order]
        p = np.concatenate([probs[m.key] for m in ms])[order]
        ids = ids[order]
        if ref_ids is None:
            ref_ids, ref_labels, ref_name = ids, labels, backbone
        elif not np.array_equal(ids, ref_ids):
            missing = np.setdiff1d(ref_ids, ids)
            extra = np.setdiff1d(ids, ref_ids)
            raise ValueError(
                f"OOF image_ids of backbone {backbone!r} differ from backbone {ref_name!r}: {len(missing)} missing "
                f"(e.g. {missing[:3].tolist()}), {len(extra)} extra (e.g. {extra[:3].tolist()}); "
                "every backbone must be trained on the same folds"
            )
        elif not np.array_equal(labels, ref_labels):
            bad = ids[labels != ref_labels][:3].tolist()
            raise ValueError(
                f"OOF labels of backbone {backbone!r} differ from {ref_name!r} for image_ids {bad}"
            )
        stacked[backbone] = p
    return ref_ids, ref_labels, stacked


def average_test_by_backbone(
    members: list[Member], probs: dict[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per backbone, the mean of its folds' test probabilities, rows ordered by sorted image_id."""
    ref = np.sort(members[0].test_ids)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = defaultdict(int)
    for m in members:
        order = np.argsort(m.test_ids)
        if not np.array_equal(m.test_ids[order], ref):
            raise ValueError(f"{m.uri}: test image_ids differ from {members[0].uri}")
        sums[m.backbone] = sums.get(m.backbone, 0.0) + probs[m.key][order]
        counts[m.backbone] += 1
    return ref, {b: s / counts[b] for b, s in sums.items()}


def _report(result: dict) -> str:
    h = result["hierarchical"]
    lines = [
        "# Ensemble",
        "",
        (
            f"Method `{result['method']}`; ensemble OOF LogLoss **{result['ensemble_oof_logloss']:.5f}** "
            f"(uniform {result['uniform_oof_logloss']:.5f})."
        ),
        "",
        "| backbone | weight | OOF LogLoss (calibrated) |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {b} | {w:.4f} | {result['backbone_oof_logloss'][b]:.5f} |" for b, w in result["weights"].items()
    ]
    lines += ["", "| method | OOF LogLoss |", "|---|---:|"]
    lines += [f"| {k} | {v:.5f} |" for k, v in result["ensemble_oof_logloss_by_method"].items()]
    lines += ["", "| member | OOF LogLoss raw | calibrated |", "|---|---:|---:|"]
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
            f"cross-fitted OOF LogLoss {t['oof_logloss_cv']:.5f})."
        ),
    ]
    return "\n".join(lines) + "\n"


def run(
    cfg: Config,
    members: list[str],
    calibration: str,
    out: str,
    groups: str | None = None,
    parent_run_id: str | None = None,
    manifest: str | None = None,
) -> dict:
    """Calibrate members, fit backbone weights on OOF, optionally add hierarchical tempering; write outputs.

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
    test_ids, test_by_backbone = average_test_by_backbone(loaded, test_p)
    fitted = {
        method: WeightedEnsemble(method, classes=classes, aliases=aliases).fit(oof_by_backbone, y)
        for method in METHODS
    }
    ens = fitted[cfg.ensemble.method]
    oof_final, test_final = ens.predict_proba(oof_by_backbone), ens.predict_proba(test_by_backbone)

    # Averaging calibrated members leaves the mixture under-confident, so a single power on the flat
    # ensemble (one group holding every class) is the baseline that hierarchical tempering must beat; otherwise
    # "hierarchical helps" could be nothing but that global sharpening.
    flat_ll = ens.oof_logloss_
    power = HierarchicalTempering(np.zeros(len(classes), dtype=np.int64), classes, aliases).fit(oof_final, y)
    tempering = {
        "power": power.beta_,
        "oof_logloss_cv": power.cv_logloss_,
        "oof_logloss_in_sample": log_loss(y, power.transform(oof_final), classes, aliases),
    }
    hier: dict = {"tried": False, "used": False, "oof_logloss_flat": flat_ll, "oof_logloss_hier": None}
    candidates = {"flat": (flat_ll, None), "tempered": (power.cv_logloss_, power)}
    if not cfg.ensemble.hierarchical:
        hier["reason"] = "ensemble.hierarchical is false"
    elif not groups:
        hier["reason"] = "no groups given (--groups)"
    else:
        group_of = groups_to_index(group_lists, classes)
        model = HierarchicalTempering(group_of, classes=classes, aliases=aliases).fit(oof_final, y)
        candidates["hierarchical"] = (model.cv_logloss_, model)
        hier.update(
            tried=True,
            oof_logloss_hier=model.cv_logloss_,
            oof_logloss_flat_tempered=power.cv_logloss_,
            oof_logloss_hier_in_sample=log_loss(y, model.transform(oof_final), classes, aliases),
            alpha=model.alpha_,
            beta=model.beta_,
            n_groups=int(group_of.max()) + 1,
            groups=groups_uri,
        )
    # Chosen on cross-fitted OOF LogLoss (in-sample fits never lose to the identity they contain).
    chosen = min(candidates, key=lambda k: candidates[k][0])
    hier["used"] = chosen == "hierarchical"
    tempering["used"] = chosen == "tempered"
    post = candidates[chosen][1]
    if post is not None:
        oof_final, test_final = post.transform(oof_final), post.transform(test_final)
    oof_final = oof_final / oof_final.sum(axis=1, keepdims=True)
    test_final = test_final / test_final.sum(axis=1, keepdims=True)

    n_folds = defaultdict(int)
    for m in loaded:
        n_folds[m.backbone] += 1
    result = {
        "method": cfg.ensemble.method,
        "weights": ens.weights_,
        "member_weights": {m.key: ens.weights_[m.backbone] / n_folds[m.backbone] for m in loaded},
        "member_oof_logloss": cal_ll,
        "member_oof_logloss_uncalibrated": raw_ll,
        "backbone_oof_logloss": ens.member_logloss_,
        "ensemble_oof_logloss": log_loss(y, oof_final, classes, aliases),
        "ensemble_oof_logloss_by_method": {k: e.oof_logloss_ for k, e in fitted.items()},
        "uniform_oof_logloss": ens.uniform_logloss_,
        "hierarchical": hier,
        "post_tempering": tempering,
        "post_processing": chosen,
        "calibration": cal_uri,
        "n_oof": len(y),
        "n_test": len(test_ids),
        "n_classes": len(classes),
    }
    summary = {
        "ensemble": storage.join(out, "ensemble.json"),
        "method": result["method"],
        "weights": result["weights"],
        "ensemble_oof_logloss": result["ensemble_oof_logloss"],
        "uniform_oof_logloss": result["uniform_oof_logloss"],
        "hierarchical_used": hier["used"],
    }
    with storage.output_dir(out) as local:
        (local / "ensemble.json").write_text(
            json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8"
        )
        save_npz(str(local / "test_probs.npz"), image_id=test_ids, probs=test_final, classes=classes)
        save_npz(str(local / "oof_probs.npz"), image_id=ids, probs=oof_final, labels=y, classes=classes)
        (local / "report.md").write_text(_report(result), encoding="utf-8")
        errors = write_error_page(local, oof_final, y, ids, classes, group_lists, aliases, manifest)
        summary["ensemble_oof_accuracy"] = errors.accuracy
        write_step_files(local, cfg, summary)
        with Tracker(cfg.tracking, "ensemble", parent_run_id=parent_run_id, local_dir=out) as tracker:
            tracker.log_params({"ensemble": cfg.ensemble.model_dump(), "members": [m.key for m in loaded]})
            metrics = {k: result[k] for k in ("ensemble_oof_logloss", "uniform_oof_logloss")}
            metrics.update({f"weight.{b}": w for b, w in ens.weights_.items()})
            metrics.update(
                {f"oof_logloss.{k}": v for k, v in result["ensemble_oof_logloss_by_method"].items()}
            )
            metrics["hierarchical_used"] = float(hier["used"])
            metrics["ensemble_oof_accuracy"] = errors.accuracy
            tracker.log_metrics(metrics)
            for name in ("ensemble.json", "report.md", PAGE):
                tracker.log_artifact(local / name)
    return summary
