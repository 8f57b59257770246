"""Register step: log the calibrated ensemble as an MLflow pyfunc model, register it, and decide its aliases.

    finegrain register --members out/train/efficientnet_lite0/fold0 --members ... --calibration out/calibrate \
        --ensemble out/ensemble --data data/sample --out out/register

`--members` are the train steps' output directories (each holds `model.pt`). The model is logged under the
parent run when there is one, else in a run of its own, and registered as `tracking.register_model` with a
signature, an input example and pinned requirements (finegrain.tracking.registry). The new version gets alias
`challenger`; the promotion gate (finegrain.tracking.promotion) scores it and the current `champion` on the same
labelled images (`promotion.holdout_uri`, else this run's out-of-fold images) and moves `champion` only when
LogLoss improves by at least `promotion.min_improvement`; the first version becomes champion.
Writes `registration.json` (the registered "name/version" and the gate's decision, or why nothing was
registered), `registration.md` (the same for the Kubeflow UI), `summary.json` and `config.yaml`. A registry
outage skips registration (or the gate) with a warning: the submission is already written, and a tracking
server must not fail a finished pipeline.
"""

from __future__ import annotations

import json
import warnings

from finegrain import storage
from finegrain.config import Config
from finegrain.steps.outputs import write_step_files


def run(
    cfg: Config,
    members: list[str],
    calibration: str,
    ensemble: str,
    data: str,
    out: str,
    parent_run_id: str | None = None,
) -> dict:
    """Register the ensemble of `members` (calibrated by `calibration`, weighted by `ensemble`), then gate it."""
    skipped = None
    if not cfg.tracking.enabled:
        skipped = "tracking.enabled is false"
    elif not cfg.tracking.register_model:
        skipped = "tracking.register_model is empty"
    registered, promotion = None, None
    if skipped is None:
        from finegrain.tracking.promotion import gate_set, promote
        from finegrain.tracking.registry import build_spec, log_ensemble_model

        spec, weights = build_spec(cfg, list(members), calibration, ensemble, data)
        gate = gate_set(cfg, ensemble, data)  # a missing holdout fails here, before anything is registered
        registered = log_ensemble_model(cfg, spec, weights, parent_run_id)
        if registered is None:
            skipped = f"MLflow at {cfg.tracking.uri} did not accept the model (see the warning in the log)"
        else:
            try:
                promotion = promote(cfg, registered.rsplit("/", 1)[1], gate, spec)
            except Exception as exc:  # noqa: BLE001 - the version stands; only its aliases are undecided
                why = f"{type(exc).__name__}: {exc}"
                warnings.warn(f"promotion gate not run: {why}", RuntimeWarning, stacklevel=2)
                promotion = {"decision": "undecided", "reason": f"MLflow failed during the gate ({why})"}
    summary = {
        "registered_model": registered,
        "model_name": cfg.tracking.register_model,
        "members": len(members),
        "skipped": skipped,
        "promotion": promotion,
    }
    with storage.output_dir(out) as local:
        (local / "registration.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        (local / "registration.md").write_text(_markdown(summary, cfg.tracking.uri), encoding="utf-8")
        write_step_files(local, cfg, summary)
    return summary


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _markdown(summary: dict, tracking_uri: str) -> str:
    if not summary["registered_model"]:
        return f"# Model registration\n\nNot registered: {summary['skipped']}.\n"
    name, version = summary["registered_model"].rsplit("/", 1)
    lines = [
        "# Model registration", "",
        f"Registered `{name}` version {version} in `{tracking_uri}` ({summary['members']} members), "
        "alias `challenger`.", "",
    ]  # fmt: skip
    p = summary["promotion"] or {}
    lines += [f"## Promotion gate: {p.get('decision', 'undecided')}", "", f"{p.get('reason', '')}.", ""]
    if "eval_set" in p:
        champion_before = p["champion_before"] or "none"
        lines += [
            "| version | role | LogLoss |", "|---|---|---|",
            f"| {version} | challenger | {_number(p['challenger_logloss'])} |",
            f"| {champion_before} | champion before | {_number(p['champion_logloss'])} |", "",
            f"Margin: {p['margin']:g}. Scored on: {p['eval_set']}"
            + (f"; {p['images']} images both versions could use." if p["images"] else "."), "",
            f"`champion` is now version {p['champion']}: `models:/{name}@champion`.",
        ]  # fmt: skip
    return "\n".join(lines) + "\n"
