"""Shared fixtures: one real S3 server and one MLflow server per test session, fresh buckets, the sample dataset.

The servers start lazily (only when a test asks for them) and are killed at session end even when tests fail.
"""

from __future__ import annotations

import atexit
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Set before anything imports albumentations or matplotlib: no PyPI version check, no display needed.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# Tests must never write to a developer's ./mlruns.db or a real tracking server by accident.
os.environ.pop("MLFLOW_TRACKING_URI", None)


from tests.support.servers import MlflowServer, S3Server

_S3_ENV_KEYS = (
    "FINEGRAIN_S3_ENDPOINT",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the servers they use, so `-m "not mlflow_server"` etc. select without bookkeeping."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & {"s3_server", "s3_bucket", "mlflow_server"}:
            item.add_marker(pytest.mark.s3)
        if "mlflow_server" in names:
            item.add_marker(pytest.mark.mlflow_server)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS S3 server for the whole session; its endpoint and credentials are in os.environ meanwhile."""
    server = S3Server(tmp_path_factory.mktemp("s3server"))
    # atexit as well as the finalizer: a KeyboardInterrupt during collection skips fixture teardown.
    atexit.register(server.stop)
    saved = {key: os.environ.get(key) for key in _S3_ENV_KEYS}
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.update(server.env())
    try:
        yield server
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _make_bucket(server: S3Server, prefix: str) -> str:
    from minio import Minio

    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    Minio(
        server.endpoint, access_key=server.access_key, secret_key=server.secret_key, secure=False
    ).make_bucket(name)
    return name


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new empty bucket on the test S3 server, as `s3://name`."""
    return f"s3://{_make_bucket(s3_server, 'test')}"


@pytest.fixture(scope="session")
def mlflow_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite database with every schema migration applied (made once per session)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()  # creating the store migrates it
    return path


@pytest.fixture
def sqlite_tracking_uri(mlflow_db_template: Path, tmp_path: Path) -> str:
    """A fresh embedded tracking store (`sqlite:///...`) for one test, copied from the migrated template."""
    path = tmp_path / "mlruns.db"
    shutil.copyfile(mlflow_db_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def mlflow_server(
    s3_server: S3Server, mlflow_db_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    """An MLflow tracking server (SQLite backend) proxying artifacts to a bucket on the test S3 server."""
    bucket = _make_bucket(s3_server, "mlflow")
    server = MlflowServer(
        tmp_path_factory.mktemp("mlflow"),
        artifacts_destination=f"s3://{bucket}/artifacts",
        env=s3_server.env(),
        db_template=mlflow_db_template,
    )
    server.artifact_bucket = bucket  # tests check that artifacts land here
    atexit.register(server.stop)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated sample dataset (Hecto layout), made once per session."""
    from finegrain.sample.generate import make_sample  # lazy: only tests that need data pay for it

    root = tmp_path_factory.mktemp("sample")
    result = make_sample(root)
    # make_sample may return its root (str/Path) or a summary dict; the dataset lives in `root` either way.
    if isinstance(result, (str, os.PathLike)):
        return Path(result)
    return root
