"""What a pipeline run decides when it starts, and how it ends its MLflow parent run.

`plan_run` is the pipeline's first task (never cached): it resolves the run's config from the parameters a
person edits in the Kubeflow UI (the config text plus `key=value` overrides, the same syntax as `--set`),
fingerprints the dataset as it is *now*, and derives everything that must change when the data or the config
changes: the data hash (preprocess's cache key), the per-run work root (so a changed dataset never finds the
finished members of an older one) and the backbone x fold fan-out. Doing this at run time, not when the run
or the recurring run is created, is what lets a scheduled run retrain on new data.

`end_parent_run` is the exit handler's body: it finds the parent run by the KFP run id it was tagged with
(an exit task cannot consume other tasks' outputs) and ends it with the pipeline's final status.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import yaml

from finegrain.config import Config, ConfigError, config_from_dict

log = logging.getLogger("finegrain.orchestration.plan")

KFP_RUN_TAG = "finegrain.kfp_run_id"
# The config sections a step's outputs depend on; tracking/storage/pipeline settings do not change a model.
OUTPUT_SECTIONS = ("data", "preprocess", "train", "regroup", "calibrate", "ensemble", "submit")


def resolve_config(
    config_text: str, overrides: list[str] | tuple[str, ...] = (), data_uri: str = ""
) -> Config:
    """The run's config: `config_text` (JSON or YAML) with `key=value` overrides; `data_uri` replaces data.uri."""
    try:
        tree = json.loads(config_text) if config_text.strip() else {}
    except json.JSONDecodeError:
        try:
            tree = yaml.safe_load(config_text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config_text: neither JSON nor YAML ({exc})") from None
    if not isinstance(tree, dict):
        raise ConfigError("config_text: top level must be a mapping of sections")
    overrides = [str(o) for o in (overrides or [])]
    if data_uri:
        overrides.append(f"data.uri={json.dumps(data_uri)}")
    return config_from_dict(tree, overrides)


def member_items(cfg: Config) -> list[dict]:
    """The fan-out: one item per (backbone, fold)."""
    return [{"backbone": b.name, "fold": k} for b in cfg.train.backbones for k in range(cfg.data.folds)]


def run_key(cfg: Config, data_hash: str) -> str:
    """12 hex digits naming one (output-relevant config, dataset content) pair."""
    dumped = cfg.model_dump(mode="json")
    body = json.dumps({k: dumped[k] for k in OUTPUT_SECTIONS}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(f"{body}\0{data_hash}".encode()).hexdigest()[:12]


def plan_run(
    config_text: str, overrides: list[str] | tuple[str, ...] = (), data_uri: str = ""
) -> dict[str, Any]:
    """Resolve the config and fingerprint the data: config (JSON), data, data_hash, code_version, work_root,
    members."""
    from finegrain.config import config_to_text
    from finegrain.orchestration.fingerprint import code_version, dataset_fingerprint

    cfg = resolve_config(config_text, overrides, data_uri)
    data_hash = dataset_fingerprint(cfg.data.uri)
    return {
        "config": config_to_text(cfg),
        "data": cfg.data.uri,
        "data_hash": data_hash,
        "code_version": code_version(),
        "work_root": f"{cfg.pipeline.work_root.rstrip('/')}/{run_key(cfg, data_hash)}",
        "members": member_items(cfg),
    }


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

    from finegrain import tracking
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
        tracking.end_run(cfg.tracking, run.info.run_id, status)
        ended.append(run.info.run_id)
    print(f"parent MLflow run(s) {ended or 'none'} of KFP run {kfp_run_id}: {status} (pipeline {state})")
    return ended
