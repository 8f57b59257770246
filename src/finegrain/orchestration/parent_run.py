"""The pipeline's parent MLflow run: opened after the plan, ended by the exit handler with the final status.

Every step nests its own run under the parent. Steps read the parent's id from the run's directory
(`runs/<run>/mlflow_parent_run.json`, found through their key's claim: orchestration.records), never from
a task output: an input that changes every run would make every step a cache miss. The exit task may take
no other task's output, so it finds the parent by the KFP run id it was tagged with and ends it FINISHED,
FAILED or KILLED as the pipeline ended.

The parent run carries the resolved config (`config.yaml`) and key params from the start, and the headline
metrics (ensemble OOF LogLoss, best member, submission valid, image counts: orchestration.headline) from the
end, so the MLflow UI shows what a pipeline run was and gave without opening a child run.
"""

from __future__ import annotations

import json
import logging

from finegrain import storage, tracking
from finegrain.config import ConfigError
from finegrain.orchestration.headline import headline, key_params
from finegrain.orchestration.layout import run_file
from finegrain.orchestration.plan import config_from_text, resolve_config

log = logging.getLogger(__name__)

PARENT_RUN_FILE = "mlflow_parent_run.json"
KFP_RUN_TAG = "finegrain.kfp_run_id"
RUN_ROOT_TAG = "finegrain.run_root"


def start_parent_run(
    config_text: str, run_name: str, data_hash: str, code_version: str, run_root: str, kfp_run_id: str = ""
) -> str:
    """Open the parent run tagged with the KFP run id; leave its id in `<run_root>/mlflow_parent_run.json`."""
    cfg = config_from_text(config_text)
    tags = {
        "finegrain.data_hash": data_hash, "finegrain.code_version": code_version,
        RUN_ROOT_TAG: run_root, KFP_RUN_TAG: kfp_run_id,
    }
    run_id = tracking.start_parent_run(cfg.tracking, run_name, tags=tags) or ""
    tracking.log_to_run(
        cfg.tracking, run_id, params=key_params(cfg, data_hash, code_version), texts={"config.yaml": cfg.to_yaml()}
    )
    record = {"run_id": run_id, "kfp_run_id": kfp_run_id}
    storage.write_text(run_file(run_root, PARENT_RUN_FILE), json.dumps(record))
    return run_id


def parent_run_id(run_root: str) -> str:
    """The parent MLflow run id of the pipeline run in `run_root` ("" when tracking was off: none opened)."""
    try:
        return json.loads(storage.read_text(run_file(run_root, PARENT_RUN_FILE)))["run_id"]
    except FileNotFoundError:
        return ""


def mlflow_status(state: str) -> str:
    """KFP's final task state as an MLflow run status."""
    state = (state or "").upper()
    if state == "SUCCEEDED":
        return "FINISHED"
    if "CANCEL" in state:
        return "KILLED"
    return "FAILED"


def end_parent_run(config_text: str, overrides: list[str], kfp_run_id: str, state: str) -> list[str]:
    """Give the parent run(s) tagged with `kfp_run_id` the pipeline's final status; returns their ids.

    Also when a step has already ended the run (model registration does, through `mlflow.start_run`): the
    pipeline's status is the one that counts. Never raises: a config that does not resolve means no parent
    run was ever started, and tracking must not turn a finished pipeline into a failed one."""
    try:
        cfg = resolve_config(config_text, overrides)
    except ConfigError as exc:
        log.warning("config does not resolve (%s): no parent run to end", exc)
        return []
    if not cfg.tracking.enabled or not kfp_run_id:
        return []
    from mlflow import MlflowClient

    from finegrain.tracking.mlflow_support import http_settings

    status = mlflow_status(state)
    try:
        with http_settings():
            client = MlflowClient(tracking_uri=cfg.tracking.uri)
            experiment = client.get_experiment_by_name(cfg.tracking.experiment)
            if experiment is None:
                return []
            runs = client.search_runs(
                [experiment.experiment_id], filter_string=f"tags.`{KFP_RUN_TAG}` = '{kfp_run_id}'"
            )
    except Exception as exc:  # noqa: BLE001 - tracking must never fail the pipeline
        log.warning("MLflow %s: cannot look up the parent run of %s: %s", cfg.tracking.uri, kfp_run_id, exc)
        return []
    ended = []
    for run in runs:
        _log_headline(cfg, run.info.run_id, run.data.tags.get(RUN_ROOT_TAG), status)
        tracking.end_run(cfg.tracking, run.info.run_id, status)
        ended.append(run.info.run_id)
    print(f"parent MLflow run(s) {ended or 'none'} of KFP run {kfp_run_id}: {status} (pipeline {state})")
    return ended


def _log_headline(cfg, run_id: str, run_root: str | None, status: str) -> None:
    """The headline metrics, from the step outputs this run used (ran or reused); never raises."""
    if not run_root:
        return
    try:
        params, metrics = headline(run_root)
    except Exception as exc:  # noqa: BLE001 - storage trouble must not turn a finished pipeline into a failed one
        log.warning("cannot read the step outputs of %s for the parent run's headline: %s", run_root, exc)
        return
    text = json.dumps({"status": status, "params": params, "metrics": metrics}, indent=2, ensure_ascii=False)
    tracking.log_to_run(cfg.tracking, run_id, params, metrics, texts={"headline.json": text})
