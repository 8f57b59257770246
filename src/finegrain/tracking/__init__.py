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

This package is the facade callers import from; the work is done in its modules:
  tracker         Tracker: one run, its retries, buffering and replay
  parent          start_parent_run / log_to_run / end_run: the pipeline's parent run
  runs            the experiment and the run-id file a resumed attempt continues
  staging         private copies of artifacts whose upload may be buffered
  runlog          the local metrics.jsonl
  mlflow_support  what the MLflow client accepts, which errors to retry, HTTP timeouts (ARTIFACT_TIMEOUT_S)
  pyfunc          the served ensemble model (imported as `finegrain.tracking.pyfunc`)
"""

from __future__ import annotations

from finegrain.tracking.parent import end_run, log_to_run, start_parent_run
from finegrain.tracking.runs import RUN_ID_FILE
from finegrain.tracking.tracker import Tracker

__all__ = ["RUN_ID_FILE", "Tracker", "end_run", "log_to_run", "start_parent_run"]
