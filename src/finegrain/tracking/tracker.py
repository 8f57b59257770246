"""The Tracker: one MLflow run that never takes a training run down with it.

    with Tracker(cfg.tracking, "convnext/fold0", parent_run_id=pid, local_dir=out) as tr:
        tr.log_params(cfg.model_dump())              # nested dicts become a.b.c keys
        tr.log_metrics({"val_logloss": 0.31}, step=epoch)
        tr.log_artifact(out / "metrics.json")

Every call also appends to `<local_dir>/metrics.jsonl` (`finegrain.tracking.runlog`). A call the server
refuses transiently is retried `cfg.retries` times with backoff, one that times out is not retried; then it
is buffered with a warning and replayed in order at the next successful call or at exit. While the server is
down, calls are buffered without waiting (a circuit breaker).
"""

from __future__ import annotations

import functools
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from finegrain.config import flatten
from finegrain.tracking import mlflow_support
from finegrain.tracking.mlflow_support import (
    MAX_PARAM_VAL_LENGTH,
    MAX_TAG_VAL_LENGTH,
    clean_key,
    http_settings,
    is_permanent,
    is_timeout,
)
from finegrain.tracking.runlog import RunLog
from finegrain.tracking.runs import experiment_id, read_run_id, save_run_id
from finegrain.tracking.staging import ArtifactStaging
from finegrain.tracking.system_metrics import SystemMetrics

if TYPE_CHECKING:
    from finegrain.config import TrackingConfig

log = logging.getLogger("finegrain.tracking")


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
        system_metrics: bool = False,
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
        self._staging = ArtifactStaging()  # copies of artifacts whose upload is pending
        self._runlog = RunLog(local_dir, run_name)
        self._system_metrics = system_metrics and cfg.system_metrics
        self._sampler: SystemMetrics | None = None
        if self.local_dir and resume:
            self.run_id = read_run_id(self.local_dir)

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
            if self._system_metrics and self.run_id and not self._pending:
                self._sampler = SystemMetrics(self.run_id, self.cfg.uri)
                if not self._sampler.start():
                    self._sampler = None
        return self.run_id

    def end(self, status: str = "FINISHED") -> None:
        """Replay what is buffered, mark the run terminated; never raises."""
        if self._ended:
            return
        self._ended = True
        if self._sampler is not None:  # before the run ends: the sampler stops on a terminated run anyway
            self._sampler.stop()
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
        self._staging.remove()

    def _connect(self) -> None:
        """Client, experiment and run, each created only once they are missing (so reconnects are cheap)."""
        from mlflow import MlflowClient

        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.cfg.uri)
        if self._experiment_id is None:
            self._experiment_id = experiment_id(self._client, self.cfg)
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
            save_run_id(self.local_dir, self.run_id)
        self._run_live = True

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
        path = self._staging.copy(src)
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
        # Looked up now, not bound at import: a test shortens it on mlflow_support.
        with http_settings(mlflow_support.ARTIFACT_TIMEOUT_S):
            upload(self.run_id, path, artifact_path)
