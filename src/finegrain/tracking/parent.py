"""The pipeline's parent run: created first and left RUNNING so every member's run nests under it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from finegrain.tracking.mlflow_support import http_settings
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
