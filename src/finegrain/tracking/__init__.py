"""MLflow tracking that never takes a training run down with it.

    with Tracker(cfg.tracking, "convnext/fold0", parent_run_id=pid, local_dir=out) as tr:
        tr.log_params(cfg.model_dump())              # nested dicts become a.b.c keys
        tr.log_metrics({"val_logloss": 0.31}, step=epoch)
        tr.log_artifact(out / "metrics.json")

Every call also appends to `<local_dir>/metrics.jsonl` (`finegrain.tracking.runlog`), so nothing is lost even with
tracking disabled or the server gone. A call the server refuses transiently (unreachable, 5xx) is retried
`cfg.retries` times with backoff (MLflow's own retry ladder, minutes per call, is switched off), one that
times out is not retried (a hanging server would cost a full timeout per try); then it is buffered with a
warning and replayed in order at the next successful call or at exit. While the server is down, calls are
buffered without waiting (a circuit breaker), so a dead or hanging server costs seconds, not minutes.
`<local_dir>/mlflow_run_id` lets a resumed attempt (KFP retry, preemption) continue the same run.

No side effect at import; the client is an explicit `MlflowClient(tracking_uri=cfg.uri)`.
"""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from finegrain import storage
from finegrain.config import flatten
from finegrain.tracking.mlflow_support import (
    ARTIFACT_TIMEOUT_S,
    MAX_PARAM_VAL_LENGTH,
    MAX_TAG_VAL_LENGTH,
    clean_key,
    http_settings,
    is_permanent,
    is_timeout,
)
from finegrain.tracking.runlog import RunLog

if TYPE_CHECKING:
    from finegrain.config import TrackingConfig

log = logging.getLogger("finegrain.tracking")

RUN_ID_FILE = "mlflow_run_id"


def _default_artifact_location(cfg: TrackingConfig) -> str | None:
    # Embedded default: artifacts beside the SQLite file, not in whatever the current directory happens to be.
    if cfg.artifact_location or not cfg.uri.startswith("sqlite:///"):
        return cfg.artifact_location
    db = Path(cfg.uri[len("sqlite:///") :])
    return (db.resolve().parent / "mlartifacts").as_uri()


class Tracker:
    """One MLflow run, resilient to tracking-server outages; a no-op (bar metrics.jsonl) when disabled."""

    retry_cooldown_s = 30.0  # while the server is down, try again at most this often (exit always tries)

    def __init__(
        self,
        cfg: TrackingConfig,
        run_name: str,
        *,
        parent_run_id: str | None = None,
        tags: dict | None = None,
        local_dir: str | Path | None = None,
        resume: bool = True,
    ) -> None:
        self.cfg = cfg
        self.run_name = run_name
        self.parent_run_id = parent_run_id
        self.tags = {k: str(v) for k, v in (tags or {}).items()}
        self.local_dir = str(local_dir) if local_dir is not None else None
        self.resume = resume
        self.run_id: str | None = None
        self._client = None
        # (what, call, metrics): buffered calls in order; metric batches carry their Metric list instead of a
        # call, so a replay after a long outage merges them into few requests instead of one per step.
        self._pending: list[tuple[str, Callable[[], None] | None, list | None]] = []
        self._down_since: float | None = None
        self._last_attempt = 0.0
        self._warned = False
        self._ended = False
        self._experiment_id: str | None = None
        self._run_live = False  # the run is known to exist on the server and to be RUNNING
        self._scratch: str | None = None  # copies of artifacts whose upload is pending
        self._runlog = RunLog(local_dir, run_name)
        if self.local_dir and resume:
            self.run_id = self._earlier_run_id()

    def _earlier_run_id(self) -> str | None:
        uri = storage.join(self.local_dir, RUN_ID_FILE)
        try:
            return storage.read_text(uri).strip() or None
        except FileNotFoundError:
            return None
        except (OSError, storage.StorageError) as exc:
            log.warning("%s: cannot read the earlier run id (%s); starting a new run", uri, exc)
            return None

    # ----------------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> Tracker:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "KILLED"
        else:
            status = "FAILED"
        self.end(status)

    def start(self) -> str | None:
        """Create (or resume) the run; on an unreachable server the run is created later, on reconnect."""
        if self.cfg.enabled:
            self._call("start run", lambda: None)
        return self.run_id

    def end(self, status: str = "FINISHED") -> None:
        """Replay what is buffered, mark the run terminated; never raises."""
        if self._ended:
            return
        self._ended = True
        if self.cfg.enabled:

            def terminate() -> None:
                self._client.set_terminated(self.run_id, status=status)

            self._call(f"end run ({status})", terminate, force=True)
            if self._pending:
                log.warning(
                    "MLflow %s unreachable at exit: %d buffered calls dropped (they are in %s)",
                    self.cfg.uri, len(self._pending), self._runlog.uri or "no local_dir",
                )  # fmt: skip
                self._pending.clear()
        self._runlog.close()
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def _connect(self) -> None:
        """Client, experiment and run, each created only once they are missing (so reconnects are cheap)."""
        from mlflow import MlflowClient

        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.cfg.uri)
        if self._experiment_id is None:
            self._experiment_id = self._experiment()
        if self.run_id is not None and not self._run_live:
            from mlflow.exceptions import MlflowException

            try:
                run = self._client.get_run(self.run_id)
                earlier_parent = run.data.tags.get("mlflow.parentRunId")
                if self.parent_run_id and earlier_parent != self.parent_run_id:
                    # A new pipeline run re-running this step: the earlier run belongs to another parent.
                    log.info("MLflow run %s belongs to another pipeline run; starting a new run", self.run_id)
                    self.run_id = None
                else:
                    if run.info.status != "RUNNING":
                        self._client.update_run(self.run_id, status="RUNNING")
                    log.info("resuming MLflow run %s", self.run_id)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                log.warning(
                    "MLflow run %s from %s not found; starting a new run", self.run_id, self.local_dir
                )
                self.run_id = None
        if self.run_id is None:
            tags = dict(self.tags)
            if self.parent_run_id:
                tags["mlflow.parentRunId"] = self.parent_run_id
            run = self._client.create_run(self._experiment_id, tags=tags, run_name=self.run_name)
            self.run_id = run.info.run_id
            self._save_run_id()
        self._run_live = True

    def _save_run_id(self) -> None:
        if not self.local_dir:
            return
        uri = storage.join(self.local_dir, RUN_ID_FILE)
        try:
            storage.write_text(uri, self.run_id)
        except (OSError, storage.StorageError) as exc:  # the run goes on; only a later resume is affected
            log.warning("%s: cannot save the run id (%s); a retried attempt will start a new run", uri, exc)

    def _experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        exp = self._client.get_experiment_by_name(self.cfg.experiment)
        if exp is not None:
            return exp.experiment_id
        try:
            return self._client.create_experiment(
                self.cfg.experiment, artifact_location=_default_artifact_location(self.cfg)
            )
        except MlflowException as exc:  # another pod created it between our lookup and our create
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return self._client.get_experiment_by_name(self.cfg.experiment).experiment_id

    # ----------------------------------------------------------------------------------- calls

    def _replay(self) -> None:
        """Send the buffered calls in order; a call the server rejects for good is dropped with a warning."""
        while self._pending:
            name, fn, metrics = self._pending[0]
            n = 1
            if metrics is not None:
                batch = list(metrics)
                while n < len(self._pending) and self._pending[n][2] is not None:
                    if len(batch) + len(self._pending[n][2]) > 1000:  # MLflow's per-request metric limit
                        break
                    batch += self._pending[n][2]
                    n += 1
                fn = functools.partial(self._client.log_batch, self.run_id, metrics=batch)
            try:
                fn()
            except Exception as exc:
                if not is_permanent(exc):
                    raise
                log.warning("MLflow %s: %s: %s (dropped)", name, type(exc).__name__, exc)
            del self._pending[:n]

    def _call(
        self, what: str, fn: Callable[[], None] | None, force: bool = False, metrics: list | None = None
    ) -> None:
        """Run `fn` (or log `metrics`) with retries; on a transient failure buffer it for replay."""
        self._pending.append((what, fn, metrics))
        cooling = (
            self._down_since is not None and time.monotonic() - self._last_attempt < self.retry_cooldown_s
        )
        if cooling and not force:
            return
        delay = 0.5
        for attempt in range(self.cfg.retries + 1):
            self._last_attempt = time.monotonic()
            try:
                with http_settings():
                    self._connect()
                    self._replay()
                if self._down_since is not None:
                    log.warning("MLflow %s reachable again; buffered calls replayed", self.cfg.uri)
                self._down_since, self._warned = None, False
                return
            except Exception as exc:  # noqa: BLE001 - tracking must never raise into training
                err = exc
            if is_timeout(err):
                # The server takes connections but does not answer: each retry would cost another full
                # timeout. Buffer now; the circuit breaker tries again after the cooldown.
                break
            if attempt < self.cfg.retries:
                time.sleep(delay)
                delay = min(delay * 2, 4.0)
        self._down_since = self._down_since or time.monotonic()
        msg = f"MLflow {self.cfg.uri} unavailable during {what} ({type(err).__name__}: {err}); "
        msg += f"{len(self._pending)} calls buffered for replay"
        log.warning(msg)
        if not self._warned:  # one warning per outage, not one per step
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
            self._warned = True

    def log_params(self, params: dict) -> None:
        flat = {clean_key(k): str(v)[:MAX_PARAM_VAL_LENGTH] for k, v in flatten(params).items()}
        self._runlog.append("params", flat)
        if not self.cfg.enabled or not flat:
            return
        from mlflow.entities import Param  # only when tracking is on: images may lack mlflow

        items = [Param(k, v) for k, v in flat.items()]
        for i in range(0, len(items), 100):  # MLflow's per-batch limit on params
            chunk = items[i : i + 100]
            self._call("log_params", lambda c=chunk: self._client.log_batch(self.run_id, params=c))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        values = {clean_key(k): float(v) for k, v in metrics.items() if v is not None}
        self._runlog.append("metrics", values, step=step)
        if not self.cfg.enabled or not values:
            return
        from mlflow.entities import Metric  # only when tracking is on: images may lack mlflow

        # The timestamp is taken now, so a replayed metric keeps the time it was measured.
        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step or 0) for k, v in values.items()]
        for i in range(0, len(items), 1000):
            chunk = items[i : i + 1000]
            self._call("log_metrics", None, metrics=chunk)

    def set_tags(self, tags: dict) -> None:
        flat = {clean_key(k): str(v)[:MAX_TAG_VAL_LENGTH] for k, v in tags.items()}
        self._runlog.append("tags", flat)
        if not self.cfg.enabled or not flat:
            return
        from mlflow.entities import RunTag  # only when tracking is on: images may lack mlflow

        items = [RunTag(k, v) for k, v in flat.items()]
        self._call("set_tags", lambda: self._client.log_batch(self.run_id, tags=items))

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        self._upload("log_artifact", local_path, artifact_path)

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        self._upload("log_artifacts", local_dir, artifact_path)

    def _upload(self, method: str, src: str | Path, artifact_path: str | None) -> None:
        """Stage a file or directory privately, then upload it with the client's `method` (retried, buffered)."""
        if not self.cfg.enabled:
            return
        path = self._stage(src)
        if path is not None:
            # the client exists only once _call has connected, so the method is looked up at call time
            self._call(
                f"{method} {src}",
                lambda: self._with_long_timeout(getattr(self._client, method), str(path), artifact_path),
            )

    def _with_long_timeout(self, upload: Callable[..., None], path: str, artifact_path: str | None) -> None:
        # A cheap call under the short API timeout first: a server that has stopped answering since the run
        # started is found in seconds, not after the upload's long timeout.
        self._client.get_experiment(self._experiment_id)
        with http_settings(ARTIFACT_TIMEOUT_S):
            upload(self.run_id, path, artifact_path)

    def _stage(self, src: str | Path) -> Path | None:
        """A private copy of a file/dir (or of an s3:// object/prefix): the caller may delete the original
        before a buffered upload is replayed."""
        src = str(src)
        if not storage.is_s3(src) and not Path(src).exists():
            log.warning("MLflow artifact %s: no such file or directory (skipped)", src)
            return None
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix="finegrain-tracking-")
        dst = Path(tempfile.mkdtemp(dir=self._scratch)) / (storage.basename(src) or "artifact")
        try:
            if storage.is_s3(src):
                # Objects under `src/` make it a "directory"; otherwise it is a single object.
                if storage.list_uris(src.rstrip("/") + "/", limit=1):
                    storage.download_dir(src, dst)
                else:
                    storage.download_file(src, dst)
            elif Path(src).is_dir():
                shutil.copytree(src, dst)
            else:
                shutil.copy2(src, dst)
        except (OSError, storage.StorageError) as exc:
            log.warning("MLflow artifact %s: cannot stage (%s); skipped", src, exc)
            return None
        return dst


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
