"""Where a Tracker's run lives: its experiment, and the run-id file that lets a resumed attempt continue it.

`<local_dir>/mlflow_run_id` is written once the run exists, so a KFP retry or a preempted pod continues the
same MLflow run instead of starting another.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from finegrain import storage

if TYPE_CHECKING:
    from finegrain.config import TrackingConfig

log = logging.getLogger("finegrain.tracking")

RUN_ID_FILE = "mlflow_run_id"


def read_run_id(local_dir: str) -> str | None:
    """The run id an earlier attempt saved in `local_dir`; None when there is none or it cannot be read."""
    uri = storage.join(local_dir, RUN_ID_FILE)
    try:
        return storage.read_text(uri).strip() or None
    except FileNotFoundError:
        return None
    except (OSError, storage.StorageError) as exc:
        log.warning("%s: cannot read the earlier run id (%s); starting a new run", uri, exc)
        return None


def save_run_id(local_dir: str | None, run_id: str) -> None:
    """Save the run id for a later attempt to resume; a failure only costs that resume, so it is a warning."""
    if not local_dir:
        return
    uri = storage.join(local_dir, RUN_ID_FILE)
    try:
        storage.write_text(uri, run_id)
    except (OSError, storage.StorageError) as exc:  # the run goes on; only a later resume is affected
        log.warning("%s: cannot save the run id (%s); a retried attempt will start a new run", uri, exc)


def default_artifact_location(cfg: TrackingConfig) -> str | None:
    """Where a new experiment keeps its artifacts: as configured, else beside an embedded SQLite store."""
    # Embedded default: artifacts beside the SQLite file, not in whatever the current directory happens to be.
    if cfg.artifact_location or not cfg.uri.startswith("sqlite:///"):
        return cfg.artifact_location
    db = Path(cfg.uri[len("sqlite:///") :])
    return (db.resolve().parent / "mlartifacts").as_uri()


def experiment_id(client, cfg: TrackingConfig) -> str:
    """The id of the experiment `cfg.experiment`, created when missing (`client` is an MlflowClient)."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(cfg.experiment)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(cfg.experiment, artifact_location=default_artifact_location(cfg))
    except MlflowException as exc:  # another pod created it between our lookup and our create
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(cfg.experiment).experiment_id
