"""System metrics (CPU, memory, disk, network, GPU) of a run, sampled on a thread by MLflow's own monitor.

MLflow's `log_system_metrics=True` belongs to its fluent `mlflow.start_run`; the Tracker holds a run through an
explicit client, so it starts `SystemMetricsMonitor` itself on the run id. Like the rest of tracking this never
takes training down: without psutil or a reachable server there are simply no system metrics, and stopping
waits a few seconds at most, never a hanging server's full timeout.
"""

from __future__ import annotations

import logging

from finegrain.tracking.mlflow_support import http_settings

log = logging.getLogger("finegrain.tracking")

SAMPLING_INTERVAL_S = 10.0
STOP_WAIT_S = 5.0


class SystemMetrics:
    """`start()` samples every SAMPLING_INTERVAL_S into the run's `system/*` metrics until `stop()`."""

    def __init__(self, run_id: str, tracking_uri: str) -> None:
        self.run_id, self.tracking_uri = run_id, tracking_uri
        self._monitor = None

    def start(self) -> bool:
        """Start sampling; False (with an info line) when it cannot (psutil missing, server refused)."""
        # The monitor logs two INFO lines per run ("Skip logging GPU metrics", "Started monitoring") into
        # every task's output; its warnings still show.
        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            with http_settings():
                # resume_logging: a resumed member continues its steps instead of restarting them at 0
                monitor = SystemMetricsMonitor(
                    self.run_id, sampling_interval=SAMPLING_INTERVAL_S, resume_logging=True,
                    tracking_uri=self.tracking_uri,
                )  # fmt: skip
            monitor.start()
        except Exception as exc:  # noqa: BLE001 - no system metrics is no reason to stop training
            log.info("MLflow system metrics off for run %s: %s: %s", self.run_id, type(exc).__name__, exc)
            return False
        self._monitor = monitor
        return True

    def stop(self) -> None:
        """Stop sampling and send what is buffered, unless the sampling thread is stuck on the server."""
        monitor, self._monitor = self._monitor, None
        # Not monitor.finish(): it joins the sampling thread without a timeout.
        if monitor is None or monitor._process is None:
            return
        monitor._shutdown_event.set()
        monitor._process.join(timeout=STOP_WAIT_S)
        if monitor._process.is_alive():  # a daemon thread waiting on a server that does not answer: leave it
            log.warning("MLflow system metrics of run %s: the sampler did not stop; left behind", self.run_id)
            return
        try:
            with http_settings():
                monitor.mlflow_logger.flush()
        except Exception as exc:  # noqa: BLE001
            log.warning("MLflow system metrics of run %s: last batch not sent: %s", self.run_id, exc)
