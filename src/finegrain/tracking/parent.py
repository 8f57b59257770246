"""The pipeline's parent run: created first and left RUNNING so every member's run nests under it.

It carries what a person opens the run for: the resolved config (an artifact), a few key params and, once the
pipeline ends, its headline metrics (`log_to_run`, called by finegrain.orchestration.parent_run).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from finegrain.config import flatten
from finegrain.tracking import mlflow_support
from finegrain.tracking.mlflow_support import MAX_PARAM_VAL_LENGTH, clean_key, http_settings
from finegrain.tracking.tracker import Tracker

if TYPE_CHECKING:
    from finegrain.config import TrackingConfig

log = logging.getLogger("finegrain.tracking")


def start_parent_run(cfg: TrackingConfig, run_name: str, tags: dict | None = None) -> str | None:
    """Create the pipeline's parent run (left RUNNING for members to nest under); None if disabled/unreachable."""
    if not cfg.enabled:
        return None
    tracker = Tracker(cfg, run_name, tags=tags, resume=False)
    tracker.start()
    if tracker._pending:
        return None
    return tracker.run_id


def end_run(cfg: TrackingConfig, run_id: str | None, status: str = "FINISHED") -> None:
    """Terminate a run started by `start_parent_run` (no-op for None or when tracking is disabled)."""
    if not cfg.enabled or not run_id:
        return
    from mlflow import MlflowClient

    try:
        with http_settings():
            MlflowClient(tracking_uri=cfg.uri).set_terminated(run_id, status=status)
    except Exception as exc:  # noqa: BLE001 - tracking must never fail the pipeline
        log.warning("MLflow %s: could not end run %s: %s", cfg.uri, run_id, exc)


def log_to_run(
    cfg: TrackingConfig,
    run_id: str | None,
    params: dict | None = None,
    metrics: dict[str, float] | None = None,
    texts: dict[str, str] | None = None,
) -> bool:
    """Log params, metrics and small text files (artifact name -> content) to an existing run in one go.

    For the parent run, which no Tracker holds open across tasks. Never raises (tracking must not fail the
    pipeline): False, with a warning, when the server refused or was unreachable."""
    if not cfg.enabled or not run_id:
        return False
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    flat = {clean_key(k): str(v)[:MAX_PARAM_VAL_LENGTH] for k, v in flatten(params or {}).items()}
    now = int(time.time() * 1000)
    values = [Metric(clean_key(k), float(v), now, 0) for k, v in (metrics or {}).items() if v is not None]
    try:
        client = MlflowClient(tracking_uri=cfg.uri)
        with http_settings():
            client.log_batch(run_id, metrics=values, params=[Param(k, v) for k, v in flat.items()])
        with http_settings(mlflow_support.ARTIFACT_TIMEOUT_S):
            for name, text in (texts or {}).items():
                client.log_text(run_id, text, name)
    except Exception as exc:  # noqa: BLE001 - tracking must never fail the pipeline
        log.warning("MLflow %s: could not log to run %s: %s", cfg.uri, run_id, exc)
        return False
    return True
