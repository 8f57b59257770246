"""A tracking server that is dead (answers 503) or hanging (takes the connection, never answers) costs a bounded,
small number of requests everywhere finegrain talks to MLflow: the Tracker, the parent run and the model
registration. Counted in requests, not seconds; tracking stays best-effort (nothing raises)."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from finegrain.config import Config, TrackingConfig
from finegrain.tracking import Tracker, end_run, mlflow_support, start_parent_run
from finegrain.tracking.registry import log_ensemble_model
from tests.support.recording_http import recording_server


@pytest.fixture(autouse=True)
def _mlflow_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    # MLflow's own defaults (7 retries, exponential backoff) are what finegrain must switch off for its calls.
    for name in (
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_HTTP_REQUEST_TIMEOUT",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(mlflow_support, "API_TIMEOUT_S", 1)  # a hanging server times out in a second


def _unavailable(handler) -> None:
    handler.send_error(503, "down for maintenance")


@pytest.fixture
def hanging() -> Iterator[tuple[str, list[dict]]]:
    """A server that reads each request and never answers (until the test ends)."""
    release = threading.Event()
    with recording_server(lambda handler: release.wait(60)) as server:
        yield server
        release.set()


def _experiment_then_unavailable(handler) -> None:
    """Enough of MLflow's REST API to find an experiment; everything else is 503."""
    if handler.path.startswith("/api/2.0/mlflow/experiments/get-by-name"):
        body = json.dumps({"experiment": {"experiment_id": "1", "name": "e", "lifecycle_stage": "active"}})
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.end_headers()
        handler.wfile.write(body.encode())
    else:
        _unavailable(handler)


def test_a_5xx_server_gets_our_retries_only_not_mlflows(tmp_path: Path) -> None:
    with recording_server(_unavailable) as (uri, seen):
        cfg = TrackingConfig(uri=uri, experiment="down", retries=2)
        with pytest.warns(RuntimeWarning, match="unavailable"), Tracker(cfg, "m", local_dir=tmp_path) as tr:
            for step in range(20):
                tr.log_metrics({"loss": 1.0}, step=step)  # buffered: the circuit breaker is open
        # start and end: (retries + 1) tries each, every try a single request (MLflow would retry 503 7 times)
        assert len(seen) == 2 * (cfg.retries + 1)
        assert start_parent_run(cfg, "pipeline") is None
        assert len(seen) == 3 * (cfg.retries + 1)
        end_run(cfg, "some-run-id")
        assert len(seen) == 3 * (cfg.retries + 1) + 1
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 20  # the local record is complete


def test_a_hanging_server_is_not_retried_after_a_timeout(hanging, tmp_path: Path) -> None:
    uri, seen = hanging
    cfg = TrackingConfig(uri=uri, experiment="hang", retries=3)
    with pytest.warns(RuntimeWarning, match="unavailable"), Tracker(cfg, "m", local_dir=tmp_path) as tr:
        tr.log_metrics({"loss": 1.0}, step=0)
    assert len(seen) == 2  # one timed-out try at start, one at exit: not (retries + 1) full timeouts each
    assert tr.run_id is None


def test_an_upload_asks_a_cheap_question_before_the_long_timeout(
    hanging, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    uri, seen = hanging
    monkeypatch.setattr(mlflow_support, "ARTIFACT_TIMEOUT_S", 3)  # bounds this test if the check is missing
    tr = Tracker(TrackingConfig(uri=uri, experiment="hang", retries=3), "m")
    # A run that started while the server was fine; the server hangs from now on.
    tr._client, tr._experiment_id, tr.run_id, tr._run_live = MlflowClient(tracking_uri=uri), "1", "r1", True
    (tmp_path / "model.pt").write_bytes(b"weights")
    with pytest.warns(RuntimeWarning, match="unavailable"):
        tr.log_artifact(tmp_path / "model.pt")
        (first,) = seen
        assert first["method"] == "GET" and "/experiments/get" in first["path"]  # not the upload
        assert len(tr._pending) == 1  # the upload waits for the server to come back
        tr.end()
    assert len(seen) == 2 and "/artifacts" not in seen[1]["path"]


def _register(uri: str, tmp_path: Path, parent_run_id: str | None = None) -> str | None:
    cfg = Config.model_validate({"tracking": {"uri": uri, "experiment": "e", "register_model": "fg"}})
    weights = tmp_path / "member0.pt"
    weights.write_bytes(b"weights")
    spec = {"members": [], "columns": ["a"]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = log_ensemble_model(cfg, spec, {"member0": str(weights)}, parent_run_id)
    assert any("could not register the ensemble" in str(w.message) for w in caught)
    return result


@pytest.mark.parametrize("parent_run_id", [None, "parent123"])
def test_registration_against_a_5xx_server_gives_up_after_one_request(tmp_path: Path, parent_run_id) -> None:
    with recording_server(_unavailable) as (uri, seen):
        assert _register(uri, tmp_path, parent_run_id) is None
    assert len(seen) == 1  # the first, cheap call; MLflow's ladder would have sent 8 over minutes


def test_registration_failing_after_the_first_call_is_not_retried_either(tmp_path: Path) -> None:
    with recording_server(_experiment_then_unavailable) as (uri, seen):
        assert _register(uri, tmp_path) is None
    paths = [s["path"].split("?")[0] for s in seen]
    assert paths[0] == "/api/2.0/mlflow/experiments/get-by-name"
    assert len(paths) == 2 and paths[1] == "/api/2.0/mlflow/runs/create"  # tried once, not 8 times


def test_registration_against_a_hanging_server_costs_one_timeout(hanging, tmp_path: Path) -> None:
    uri, seen = hanging
    assert _register(uri, tmp_path) is None
    assert len(seen) == 1


@pytest.mark.parametrize("under_parent", [False, True])
def test_registration_still_works_against_a_live_store(
    sqlite_tracking_uri: str, tmp_path: Path, under_parent
):
    from mlflow import MlflowClient

    cfg = TrackingConfig(uri=sqlite_tracking_uri, experiment="e", retries=0)
    parent = start_parent_run(cfg, "pipeline") if under_parent else None
    weights = tmp_path / "member0.pt"
    weights.write_bytes(b"weights")
    full = Config.model_validate({"tracking": cfg.model_dump() | {"register_model": "fg"}})
    assert log_ensemble_model(full, {"members": []}, {"member0": str(weights)}, parent) == "fg/1"
    (version,) = MlflowClient(tracking_uri=cfg.uri).search_model_versions("name='fg'")
    assert version.status == "READY"
    if under_parent:
        assert version.run_id == parent
