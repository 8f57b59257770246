"""The train step's MLflow logging: params, per-epoch metrics and artifacts on a live server, and training
that survives the tracking server dying mid-run.
"""

from __future__ import annotations

import json

import pytest

from finegrain.steps import train
from tests.support.train_step import BACKBONE, EPOCHS


@pytest.mark.slow
@pytest.mark.mlflow_server
def test_mlflow_run_has_params_epoch_metrics_and_artifacts(member, mlflow_server, tmp_path):
    from mlflow import MlflowClient

    cfg = member["cfg"].model_copy(deep=True)
    cfg.tracking.enabled, cfg.tracking.uri, cfg.tracking.experiment = True, mlflow_server.uri, "train-test"
    metrics = train.run(cfg, str(member["prep"]), 0, BACKBONE, str(tmp_path / "out"))
    client = MlflowClient(mlflow_server.uri)
    run = client.get_run(metrics["mlflow_run_id"])
    assert run.info.run_name == f"{BACKBONE}/fold0" and run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == str(EPOCHS) and run.data.params["train.head.embedding_dim"] == "16"
    # the settings that tell members apart, not the whole config (that is the config.yaml artifact)
    assert len(run.data.params) <= 30 and run.data.params["backbone"] == BACKBONE and "storage.retries" not in run.data.params
    history = client.get_metric_history(run.info.run_id, "val_logloss")
    assert sorted(m.step for m in history) == list(range(EPOCHS))
    for key in ("train_loss", "lr", "img_per_s", "val_accuracy"):
        assert len(client.get_metric_history(run.info.run_id, key)) == EPOCHS
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "config.yaml", "oof.npz", "test.npz"} <= artifacts


@pytest.mark.slow
@pytest.mark.mlflow_server
def test_training_survives_the_tracking_server_dying(member, tmp_path, mlflow_db_template):
    from tests.support.servers import MlflowServer

    server = MlflowServer(tmp_path / "mlflow", db_template=mlflow_db_template)
    cfg = member["cfg"].model_copy(deep=True)
    cfg.tracking.enabled, cfg.tracking.uri, cfg.tracking.retries = True, server.uri, 0

    def kill_server(epoch: int, record: dict) -> None:
        if epoch == 0:
            server.stop()

    try:
        metrics = train.run(cfg, str(member["prep"]), 0, BACKBONE, str(tmp_path / "out"), on_epoch_end=kill_server)
    finally:
        server.stop()
    assert metrics["epochs"] == EPOCHS and (tmp_path / "out" / "metrics.json").exists()
    rows = [json.loads(line) for line in (tmp_path / "out" / "tracking" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if r["kind"] == "metrics" and "val_logloss" in r["data"]]
    assert steps == list(range(EPOCHS))
