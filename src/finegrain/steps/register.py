"""Register step: log the calibrated ensemble as an MLflow pyfunc model and register it.

    finegrain register --members out/train/efficientnet_lite0/fold0 --members ... --calibration out/calibrate \
        --ensemble out/ensemble --data data/sample --out out/register

`--members` are the train steps' output directories (each holds `model.pt`). The model is logged under the
parent run when there is one, else in a run of its own, and registered as `tracking.register_model`. Writes
`registration.json` (the registered "name/version", or why nothing was registered), `registration.md` (the
same for the Kubeflow UI), `summary.json` and `config.yaml`. A registry outage skips registration with a
warning: the submission is already written, and a tracking server must not fail a finished pipeline.
"""

from __future__ import annotations

import json

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
    """Register the ensemble of `members` (calibrated by `calibration`, weighted by `ensemble`)."""
    skipped = None
    if not cfg.tracking.enabled:
        skipped = "tracking.enabled is false"
    elif not cfg.tracking.register_model:
        skipped = "tracking.register_model is empty"
    registered = None
    if skipped is None:
        from finegrain.tracking.pyfunc import register_ensemble

        registered = register_ensemble(
            cfg, members=list(members), calibration_dir=calibration, ensemble_dir=ensemble, data_uri=data,
            parent_run_id=parent_run_id,
        )
        if registered is None:
            skipped = f"MLflow at {cfg.tracking.uri} did not accept the model (see the warning in the log)"
    summary = {
        "registered_model": registered,
        "model_name": cfg.tracking.register_model,
        "members": len(members),
        "skipped": skipped,
    }
    with storage.output_dir(out) as local:
        (local / "registration.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        (local / "registration.md").write_text(_markdown(summary, cfg.tracking.uri), encoding="utf-8")
        write_step_files(local, cfg, summary)
    return summary


def _markdown(summary: dict, tracking_uri: str) -> str:
    if summary["registered_model"]:
        name, version = summary["registered_model"].rsplit("/", 1)
        head = f"Registered `{name}` version {version} in `{tracking_uri}` ({summary['members']} members)."
    else:
        head = f"Not registered: {summary['skipped']}."
    return f"# Model registration\n\n{head}\n"
