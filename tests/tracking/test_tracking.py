"""finegrain.tracking: embedded SQLite store, a real MLflow server with artifacts on S3, resume, and outages."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from mlflow import MlflowClient

from finegrain import storage
from finegrain.config import TrackingConfig, flatten
from finegrain.tracking import Tracker, end_run, start_parent_run
from finegrain.tracking.mlflow_support import MAX_PARAM_VAL_LENGTH


def _jsonl(local_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (local_dir / "metrics.jsonl").read_text().splitlines()]


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_flatten_nested_params() -> None:
    assert flatten({"train": {"lr": 0.1, "head": {"name": "adaface"}}, "seed": 1, "empty": {}}) == {
        "train.lr": 0.1,
        "train.head.name": "adaface",
        "seed": 1,
        "empty": {},
    }


def test_embedded_sqlite_params_metrics_artifacts_nested(sqlite_tracking_uri: str, tmp_path: Path) -> None:
    cfg = TrackingConfig(uri=sqlite_tracking_uri, experiment="unit", retries=0)
    parent = start_parent_run(cfg, "pipeline", tags={"config": "sample"})
    assert parent
    art = tmp_path / "report.md"
    art.write_text("# report")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "tsne.png").write_bytes(b"\x89PNG")
    local = tmp_path / "member"
    with Tracker(cfg, "effnet/fold0", parent_run_id=parent, tags={"fold": 0}, local_dir=local) as tr:
        tr.log_params({"train": {"lr": 0.002, "head": {"name": "adaface"}}, "long": "x" * 7000})
        tr.log_params({"train": {"lr": 0.5}})  # MLflow refuses to change a param: dropped, nothing raised
        for step in range(3):
            tr.log_metrics({"val_logloss": 1.0 / (step + 1), "클래스_acc": 0.5}, step=step)
        tr.log_artifact(art)
        tr.log_artifacts(tmp_path / "plots", artifact_path="plots")
        tr.set_tags({"backbone": "efficientnet_lite0"})
        run_id = tr.run_id
    end_run(cfg, parent)

    client = MlflowClient(tracking_uri=cfg.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "effnet/fold0"
    assert run.data.params["train.lr"] == "0.002"
    assert run.data.params["train.head.name"] == "adaface"
    assert len(run.data.params["long"]) == MAX_PARAM_VAL_LENGTH
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags["fold"] == "0" and run.data.tags["backbone"] == "efficientnet_lite0"
    assert _history(client, run_id, "val_logloss") == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    assert _history(client, run_id, "클래스_acc")[0] == (0, 0.5)
    paths = {a.path for a in client.list_artifacts(run_id)} | {
        a.path for a in client.list_artifacts(run_id, "plots")
    }
    assert {"report.md", "plots/tsne.png"} <= paths
    # Embedded default: artifacts live beside the SQLite file, not in the working directory.
    assert (tmp_path / "mlartifacts").is_dir()
    assert client.get_run(parent).info.status == "FINISHED"

    rows = _jsonl(local)
    assert [r["kind"] for r in rows].count("metrics") == 3
    assert rows[0]["data"]["train.head.name"] == "adaface"
    assert (local / "mlflow_run_id").read_text() == run_id


def test_disabled_is_a_noop_but_keeps_the_local_record(tmp_path: Path) -> None:
    cfg = TrackingConfig(enabled=False, uri="http://127.0.0.1:9", experiment="off")
    assert start_parent_run(cfg, "pipeline") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a warning: nothing is contacted
        with Tracker(cfg, "m", local_dir=tmp_path) as tr:
            tr.log_params({"a": {"b": 1}})
            tr.log_metrics({"loss": 0.5}, step=1)
            tr.log_artifact(tmp_path / "metrics.jsonl")
    assert tr.run_id is None
    rows = _jsonl(tmp_path)
    assert rows[0]["data"] == {"a.b": "1"} and rows[1]["data"] == {"loss": 0.5} and rows[1]["step"] == 1


@pytest.mark.slow  # starts the session's MLflow server (10-30 s on 2 shared cores)
def test_server_round_trip_with_artifacts_on_s3(mlflow_server, tmp_path: Path) -> None:
    cfg = TrackingConfig(uri=mlflow_server.uri, experiment="server-roundtrip", retries=1)
    (tmp_path / "metrics.json").write_text('{"val_logloss": 0.3}')
    with Tracker(cfg, "convnext/fold1") as tr:
        tr.log_params({"fold": 1})
        tr.log_metrics({"val_logloss": 0.3}, step=5)
        tr.log_artifact(tmp_path / "metrics.json", artifact_path="outputs")
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    run = client.get_run(tr.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["val_logloss"] == 0.3
    # The server proxies artifacts into its S3 bucket: the object is really there.
    objects = storage.list_uris(f"s3://{mlflow_server.artifact_bucket}/artifacts")
    mine = [u for u in objects if tr.run_id in u and u.endswith("outputs/metrics.json")]
    assert len(mine) == 1, objects
    assert storage.read_text(mine[0]) == '{"val_logloss": 0.3}'


def test_resume_continues_the_same_run(sqlite_tracking_uri: str, tmp_path: Path) -> None:
    cfg = TrackingConfig(uri=sqlite_tracking_uri, experiment="resume", retries=0)
    local = tmp_path / "fold0"
    with pytest.raises(RuntimeError), Tracker(cfg, "m/fold0", local_dir=local) as first:
        first.log_metrics({"loss": 2.0}, step=0)
        raise RuntimeError("preempted")
    client = MlflowClient(tracking_uri=cfg.uri)
    assert client.get_run(first.run_id).info.status == "FAILED"
    with Tracker(cfg, "m/fold0", local_dir=local) as second:
        second.log_metrics({"loss": 1.0}, step=1)
    assert second.run_id == first.run_id
    assert client.get_run(first.run_id).info.status == "FINISHED"
    assert _history(client, first.run_id, "loss") == [(0, 2.0), (1, 1.0)]
    with Tracker(cfg, "m/fold0", local_dir=local, resume=False) as fresh:
        fresh.log_metrics({"loss": 0.5}, step=0)
    assert fresh.run_id != first.run_id
    assert len(_jsonl(local)) == 3  # the local record is appended across attempts


def test_rerun_under_a_new_parent_starts_a_new_nested_run(sqlite_tracking_uri: str, tmp_path: Path) -> None:
    cfg = TrackingConfig(uri=sqlite_tracking_uri, experiment="reparent", retries=0)
    client = MlflowClient(tracking_uri=cfg.uri)
    parent_a, parent_b = (start_parent_run(cfg, name) for name in ("pipeline-a", "pipeline-b"))
    local = tmp_path / "regroup"
    with Tracker(cfg, "regroup", parent_run_id=parent_a, local_dir=local) as first:
        first.log_metrics({"groups": 3.0})
    with Tracker(cfg, "regroup", parent_run_id=parent_b, local_dir=local) as second:
        second.log_metrics({"groups": 4.0})
    assert second.run_id != first.run_id
    assert client.get_run(second.run_id).data.tags["mlflow.parentRunId"] == parent_b
    with Tracker(cfg, "regroup", parent_run_id=parent_b, local_dir=local) as retry:  # a retried task resumes
        retry.log_metrics({"groups": 4.0})
    assert retry.run_id == second.run_id


@pytest.mark.slow  # restarts the MLflow server
def test_survives_server_outage_and_replays(mlflow_server, tmp_path: Path) -> None:
    cfg = TrackingConfig(uri=mlflow_server.uri, experiment="outage", retries=1)
    tr = Tracker(cfg, "outage/fold0", local_dir=tmp_path)
    tr.retry_cooldown_s = 3600.0  # after the first failure, buffer without waiting
    try:
        with tr:
            tr.log_metrics({"loss": 30.0}, step=0)
            mlflow_server.stop()
            attempts = []
            live_log_batch = tr._client.log_batch
            tr._client.log_batch = lambda *a, **kw: (attempts.append(1), live_log_batch(*a, **kw))[1]
            with pytest.warns(RuntimeWarning, match="unavailable"):
                tr.log_metrics({"loss": 29.0}, step=1)
            for step in range(2, 30):
                tr.log_metrics({"loss": 30.0 - step}, step=step)
            tr.log_params({"after": "outage"})
            # a dead server must not stall training: after the first failed call (and its retries) the rest are
            # buffered without touching the network until the cooldown ends
            assert len(attempts) <= cfg.retries + 1, "a dead server was retried on every step"
            tr._client.log_batch = live_log_batch
            mlflow_server.start()
            batches = []
            real = tr._client.log_batch
            tr._client.log_batch = lambda *a, **kw: (batches.append(kw), real(*a, **kw))[1]
    finally:
        mlflow_server.start()  # the session's server must be up for later tests whatever happens here
    # 29 buffered metric calls went back as one request (then the params).
    assert [len(b.get("metrics", ())) for b in batches] == [29, 0]
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    run = client.get_run(tr.run_id)
    assert run.info.status == "FINISHED"
    assert _history(client, tr.run_id, "loss") == [(s, 30.0 - s) for s in range(30)]
    assert run.data.params["after"] == "outage"
    assert [r["step"] for r in _jsonl(tmp_path) if r["kind"] == "metrics"] == list(range(30))


def test_unreachable_server_from_the_start_never_raises(tmp_path: Path) -> None:
    from tests.support.servers import free_port

    cfg = TrackingConfig(uri=f"http://127.0.0.1:{free_port()}", experiment="nowhere", retries=0)
    with pytest.warns(RuntimeWarning, match="unavailable"):
        with Tracker(cfg, "lonely", local_dir=tmp_path) as tr:
            tr.log_params({"a": 1})
            tr.log_metrics({"loss": 1.0}, step=0)
            tr.log_artifact(tmp_path / "metrics.jsonl")
    assert tr.run_id is None
    assert start_parent_run(cfg, "pipeline") is None
    assert [r["kind"] for r in _jsonl(tmp_path)] == ["params", "metrics"]


def test_http_timeouts_are_scoped_and_a_user_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from finegrain.tracking.mlflow_support import http_settings

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    with http_settings():
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "10"
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
        with http_settings(600):  # artifact uploads get a long timeout
            assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "600"
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "10"
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "42")
    with http_settings(600):
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "42"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "42"


def test_local_dir_on_s3_keeps_run_id_and_record(
    sqlite_tracking_uri: str, s3_bucket: str, tmp_path: Path
) -> None:
    from finegrain.tracking.runlog import read_runlog

    cfg = TrackingConfig(uri=sqlite_tracking_uri, experiment="s3-dir", retries=0)
    out = f"{s3_bucket}/calibrate"
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "a.png").write_bytes(b"png")
    storage.upload_dir(tmp_path / "plots", f"{s3_bucket}/plots")
    with Tracker(cfg, "calibrate", local_dir=out) as first:
        first.log_metrics({"nll": 1.0}, step=0)
        first.log_artifacts(f"{s3_bucket}/plots", artifact_path="plots")  # an s3:// prefix is staged locally
    with Tracker(cfg, "calibrate", local_dir=out) as second:
        second.log_metrics({"nll": 0.5}, step=1)
    assert second.run_id == first.run_id == storage.read_text(f"{out}/mlflow_run_id")
    assert [r["data"]["nll"] for r in read_runlog(out)] == [1.0, 0.5]
    client = MlflowClient(tracking_uri=cfg.uri)
    assert _history(client, first.run_id, "nll") == [(0, 1.0), (1, 0.5)]
    assert [a.path for a in client.list_artifacts(first.run_id, "plots")] == ["plots/a.png"]


def test_system_metrics_sampled_while_the_run_lasts(sqlite_tracking_uri: str, tmp_path: Path, monkeypatch) -> None:
    """Train tasks log CPU/memory/disk/network as system/* metrics (MLflow's monitor, on our run id)."""
    import time

    from finegrain.tracking import system_metrics

    monkeypatch.setattr(system_metrics, "SAMPLING_INTERVAL_S", 0.2)
    cfg = TrackingConfig(uri=sqlite_tracking_uri, experiment="sysmetrics", retries=0)
    tr = Tracker(cfg, "member", local_dir=tmp_path, system_metrics=True)
    tr.start()
    time.sleep(1.5)
    started = time.perf_counter()
    tr.end()
    assert time.perf_counter() - started < system_metrics.STOP_WAIT_S + 5  # stopping the sampler is quick
    keys = set(MlflowClient(tracking_uri=sqlite_tracking_uri).get_run(tr.run_id).data.metrics)
    assert "system/cpu_utilization_percentage" in keys and "system/system_memory_usage_megabytes" in keys
    with Tracker(cfg.model_copy(update={"system_metrics": False}), "off", local_dir=tmp_path / "b",
                 system_metrics=True) as off:  # fmt: skip
        time.sleep(0.5)
    assert not MlflowClient(tracking_uri=sqlite_tracking_uri).get_run(off.run_id).data.metrics
