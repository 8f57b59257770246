"""The first local run's registered model as a user meets it after `make run`: the champion served over HTTP by
the serving manifest's own command, `finegrain predict` on a folder of new photos with a corrupt one among them,
the batch-prediction pipeline through kfp.local, and each member's weights stored once in the MLflow store.

Reads the session's first run (tests/orchestration/conftest.py) before test_local_run.py reruns on its outputs.
"""

import base64
import hashlib
import json
import shutil
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest

from tests.support.local_runs import output_path
from tests.support.paths import REPO as ROOT

pytestmark = pytest.mark.slow


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_first_version_is_champion_and_each_member_weights_are_stored_once(local_run):
    from mlflow import MlflowClient

    cfg, out, summary = local_run
    name = cfg.tracking.register_model
    registration = json.loads((output_path(summary, "register") / "registration.json").read_text(encoding="utf-8"))
    assert registration["registered_model"] == f"{name}/1"
    assert registration["promotion"]["decision"] == "promoted" and registration["promotion"]["champion_before"] is None
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    model_id = client.get_model_version(name, "1").source.rsplit("/", 1)[-1]  # models:/<logged model id>
    model_dir = Path(urlparse(client.get_logged_model(model_id).artifact_location).path)
    stored = sorted(model_dir.rglob("*.pt"))
    assert [p.name for p in stored] == [f"member{k}.pt" for k in range(cfg.data.folds)]
    members = [output_path(summary, f"train/efficientnet_lite0/fold{k}") / "model.pt" for k in range(cfg.data.folds)]
    assert {_sha256(p) for p in stored} == {_sha256(p) for p in members}
    # no other copy anywhere in the store: the member runs logged none (the logged model's own directory
    # layout under mlartifacts/ is MLflow's business, so compare the files themselves, not path depths)
    everywhere = sorted((out.parent / "mlartifacts").rglob("*.pt"))
    assert [p.resolve() for p in everywhere] == [p.resolve() for p in stored]


def _test_images(dataset: Path, n: int) -> tuple[list[str], list[bytes]]:
    test = pd.read_csv(dataset / "test.csv", encoding="utf-8-sig").head(n)
    return list(test["ID"]), [(dataset / p).read_bytes() for p in test["img_path"]]


def test_served_champion_answers_base64_jpegs_with_the_submission(local_run, dataset, tmp_path):
    """`mlflow models serve -m models:/finegrain-ensemble@champion --env-manager local` as the serving manifest
    runs it, on 127.0.0.1: base64 JPEGs in `dataframe_split` get the submission's probabilities back."""
    import requests

    from tests.support.model_server import ModelServer

    cfg, _, summary = local_run
    ids, images = _test_images(dataset, 6)
    rows = [[base64.b64encode(b).decode("ascii"), i] for i, b in zip(ids, images)]
    rows.insert(2, [base64.b64encode(images[0][:300]).decode("ascii"), "truncated"])
    with ModelServer(tmp_path / "serve", cfg.tracking.uri) as server:
        reply = requests.post(
            f"{server.url}/invocations", json={"dataframe_split": {"columns": ["image", "id"], "data": rows}}, timeout=300
        )
    assert reply.status_code == 200, reply.text[:2000]
    assert "NaN" not in reply.text  # the unusable row's probabilities are JSON nulls
    pred = pd.DataFrame(reply.json()["predictions"]).set_index("id")
    assert list(pred.index) == [ids[0], ids[1], "truncated", *ids[2:]]
    assert pred.loc["truncated", "error"].startswith("row 2: cannot decode image")
    assert pred.drop(index="truncated")["error"].eq("").all()  # the column is there because one row failed
    sub = pd.read_csv(output_path(summary, "submit") / "submission.csv", encoding="utf-8-sig").set_index("ID")
    assert list(pred.columns) == [*sub.columns, "error"]
    np.testing.assert_allclose(pred.loc[ids, sub.columns].to_numpy(dtype=float), sub.loc[ids].to_numpy(), atol=1e-5)


@pytest.fixture(scope="module")
def new_photos(dataset, tmp_path_factory) -> Path:
    """The test images as a folder of new photos, plus one corrupt file and one that is not an image at all."""
    folder = tmp_path_factory.mktemp("photos")
    for path in sorted((dataset / "test").glob("*.jpg")):
        shutil.copyfile(path, folder / path.name)
    first = sorted(folder.glob("*.jpg"))[0].read_bytes()
    (folder / "TEST_corrupt.jpg").write_bytes(first[: len(first) // 2])
    (folder / "README.txt").write_text("not an image, not listed")
    return folder


def _same_as_submission(predictions: Path, submission: Path) -> pd.DataFrame:
    pred = pd.read_csv(predictions, encoding="utf-8-sig", dtype={"ID": str}).set_index("ID")
    sub = pd.read_csv(submission, encoding="utf-8-sig").set_index("ID")
    assert list(pred.columns) == list(sub.columns) and sorted(pred.index) == sorted(sub.index)
    np.testing.assert_allclose(pred.loc[sub.index].to_numpy(), sub.to_numpy(), atol=1e-5)
    return pred


def test_finegrain_predict_writes_every_other_row_and_names_the_corrupt_file(local_run, new_photos, tmp_path):
    from typer.testing import CliRunner

    from finegrain.cli import app

    cfg, _, summary = local_run
    target = tmp_path / "predictions.csv"
    result = CliRunner().invoke(app, [
        "predict", "--model", f"models:/{cfg.tracking.register_model}@champion", "--images", str(new_photos),
        "--out", str(target), "--config", str(ROOT / "configs/sample.yaml"), "--set", f"tracking.uri={cfg.tracking.uri}",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    pred = _same_as_submission(target, output_path(summary, "submit") / "submission.csv")
    assert list(pred.index) == sorted(pred.index)  # input order: the files sorted by path
    errors = pd.read_csv(tmp_path / "predictions.errors.csv", encoding="utf-8-sig")
    assert list(errors["ID"]) == ["TEST_corrupt"] and errors["error"][0].startswith("cannot decode image")
    assert f"not predicted: {new_photos / 'TEST_corrupt.jpg'}: cannot decode image" in result.stderr
    printed = json.loads(result.stdout)
    assert printed["images"] == len(pred) + 1 and printed["rows"] == len(pred)
    assert "images," in result.stderr and "img/s" in result.stderr  # progress lines (no terminal here)


def test_predict_pipeline_on_kfp_local_gives_the_same_rows_in_input_order(local_run, new_photos, tmp_path):
    """pipelines/predict.py through kfp.local: three shards, concatenated in input order, the corrupt file listed."""
    from pipelines import predict as predict_pipeline

    cfg, _, summary = local_run
    target = tmp_path / "pipeline" / "predictions.csv"
    rc = predict_pipeline.main([
        "local", "--config", str(ROOT / "configs/sample.yaml"), "--set", f"tracking.uri={cfg.tracking.uri}",
        "--set", "predict.images_per_shard=25", "--images", str(new_photos), "--out", str(target),
        "--kfp-root", str(tmp_path / "kfp"),
    ])  # fmt: skip
    assert rc == 0
    pred = _same_as_submission(target, output_path(summary, "submit") / "submission.csv")
    assert list(pred.index) == sorted(pred.index)
    errors = pd.read_csv(target.parent / "predictions.errors.csv", encoding="utf-8-sig")
    assert list(errors["ID"]) == ["TEST_corrupt"]
