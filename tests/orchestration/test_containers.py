"""The whole pipeline with every step in the project's image (`finegrain run --runner docker`).

Runs only under `make test-containers` (FINEGRAIN_DOCKER_TESTS=1, a Docker engine, the CPU image built as
FINEGRAIN_TEST_IMAGE). The sample dataset is read from the SeaweedFS test server, the steps log to the MLflow
test server (which proxies artifacts to S3), and every step container is inspected while it exists.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from finegrain.orchestration.docker import ROOT_LABEL, chown_tree, container_args, forwarded_env, images_for
from tests.support.paths import REPO as ROOT

IMAGE = os.environ.get("FINEGRAIN_TEST_IMAGE", "finegrain:latest-cpu")
# The small settings of tests/test_local_run.py: the whole pipeline, a few minutes on 2 cores.
SMALL = [
    f"--set={item}"
    for item in ("train.epochs=1", "train.image_size=64", "train.batch_size=16", "train.max_steps_per_epoch=6",
                 "regroup.perplexity=5")
]
docker_only = pytest.mark.skipif(
    os.environ.get("FINEGRAIN_DOCKER_TESTS") != "1", reason="make test-containers (FINEGRAIN_DOCKER_TESTS=1)"
)


# --- no Docker needed: the settings every step container gets ------------------------------------------------


def test_container_args_mount_one_root_and_run_locked_down(tmp_path):
    root = tmp_path / "root"
    data = tmp_path / "data"
    args = container_args(root, "1000", str(data), {"A": "1"})
    mounts = {m["Target"]: m for m in args["mounts"]}
    assert mounts[str(root)]["Source"] == str(root) and not mounts[str(root)].get("ReadOnly")
    assert mounts[str(data)]["ReadOnly"] is True  # a local dataset outside the root: read-only
    assert args["read_only"] is True and "/tmp" in args["tmpfs"] and args["cap_drop"] == ["ALL"]
    assert args["network_mode"] == "host" and args["user"] == "1000" and args["labels"][ROOT_LABEL] == str(root)
    # data already under the root, or on S3, needs no extra mount
    assert len(container_args(root, "1000", str(root / "data"), {})["mounts"]) == 1
    assert len(container_args(root, "1000", "s3://bucket/data", {})["mounts"]) == 1


def test_forwarded_env_passes_endpoints_and_credentials_only():
    env = forwarded_env(
        {"AWS_ACCESS_KEY_ID": "k", "FINEGRAIN_S3_ENDPOINT": "h:1", "MLFLOW_S3_ENDPOINT_URL": "u", "PATH": "/x",
         "HOME": "/root"}
    )
    assert env["AWS_ACCESS_KEY_ID"] == "k" and env["FINEGRAIN_S3_ENDPOINT"] == "h:1" and "MLFLOW_S3_ENDPOINT_URL" in env
    assert "PATH" not in env and env["HOME"] == "/tmp"  # the root filesystem is read-only


def test_images_for_lists_every_image_the_pipeline_uses():
    from finegrain.config import Config

    cfg = Config()
    cfg.pipeline.base_image = "a:1"
    assert images_for(cfg) == ["a:1"]
    cfg.pipeline.base_image = "a:1-cuda"  # the non-train tasks then run on the derived a:1-cpu
    assert images_for(cfg) == ["a:1-cpu", "a:1-cuda"]
    cfg.pipeline.cpu_image = "b:2"
    assert images_for(cfg) == ["a:1-cuda", "b:2"]


@pytest.mark.skipif(os.getuid() != 0, reason="chown to another user needs root")
def test_chown_tree_hands_everything_to_the_container_user(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_text("x")
    chown_tree(tmp_path / "a", 1000)
    assert {p.stat().st_uid for p in [tmp_path / "a", *(tmp_path / "a").rglob("*")]} == {1000}


def test_an_unknown_runner_is_refused(tmp_path):
    from finegrain.config import Config
    from finegrain.orchestration.local import run_pipeline_locally

    (tmp_path / "data" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="runner must be"):
        run_pipeline_locally(Config(), data=str(tmp_path / "data"), out=str(tmp_path / "out"), runner="podman")


@docker_only
def test_a_missing_image_says_how_to_build_it(tmp_path):
    from finegrain.config import Config
    from finegrain.orchestration.docker import ContainerRunError, prepare_docker_run

    cfg = Config()
    cfg.pipeline.base_image = "finegrain-test:never-built"
    cfg.pipeline.cpu_image = "finegrain-test:never-built"
    with pytest.raises(ContainerRunError, match="make images-cpu"):
        prepare_docker_run(cfg, tmp_path, "s3://bucket/data")


# --- the real thing -------------------------------------------------------------------------------------------


class StepWatch:
    """Inspects every container carrying our root label as it is created (they are auto-removed on exit)."""

    def __init__(self, root: Path):
        import docker

        self.client = docker.from_env()
        self.root = root
        self.seen: dict[str, dict] = {}
        self.missed: list[str] = []
        self._events = self.client.events(
            decode=True, filters={"type": "container", "event": "create", "label": f"{ROOT_LABEL}={root}"}
        )
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        import docker

        for event in self._events:
            cid = event.get("id")
            try:
                attrs = self.client.api.inspect_container(cid)
            except docker.errors.NotFound:
                self.missed.append(cid)
                continue
            self.seen[cid] = attrs

    def close(self) -> None:
        self._events.close()
        self.client.close()


def _step_name(attrs: dict) -> str:
    args = (attrs["Config"].get("Cmd") or []) + (attrs["Config"].get("Entrypoint") or [])
    return args[args.index("--function_to_execute") + 1] if "--function_to_execute" in args else "?"


@docker_only
@pytest.mark.slow
def test_pipeline_runs_every_step_in_the_image(tmp_path, sample_dir, s3_bucket, mlflow_server):
    from mlflow import MlflowClient

    from finegrain import storage

    data = f"{s3_bucket}/sample"
    storage.upload_dir(sample_dir, data)
    root = tmp_path / "root"
    root.mkdir()
    image_sets = ["--set", f"pipeline.base_image={IMAGE}", "--set", f"pipeline.cpu_image={IMAGE}"]
    cmd = [
        sys.executable, "-m", "finegrain.cli", "run", "--runner", "docker",
        "--config", "configs/sample.yaml", "--data", data, "--out", str(root),
        "--set", f"tracking.uri={mlflow_server.uri}", *image_sets, *SMALL,
    ]  # fmt: skip
    watch = StepWatch(root)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=3600)
    finally:
        watch.close()
    assert proc.returncode == 0, f"finegrain run --runner docker failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"

    # A valid submission: one row per test image of the sample, probabilities per class.
    check = json.loads((root / "submit" / "submission_check.json").read_text())
    assert check.get("valid", check.get("ok")) is True, check
    with open(root / "submit" / "submission.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert len(rows) - 1 == len(list((sample_dir / "test").iterdir()))

    # Every step ran in the image, as a non-root user, on a read-only root filesystem, capabilities dropped.
    assert not watch.missed, f"containers gone before they could be inspected: {watch.missed}"
    steps = [_step_name(a) for a in watch.seen.values()]
    assert {"start_run", "preprocess", "train", "regroup", "calibrate", "ensemble", "submit"} <= set(steps), steps
    assert steps.count("train") == 4  # 2 backbones x 2 folds
    for attrs in watch.seen.values():
        name = _step_name(attrs)
        assert attrs["Config"]["Image"] in (IMAGE, f"{IMAGE}:latest"), (name, attrs["Config"]["Image"])
        user = attrs["Config"]["User"]
        assert user and user.split(":")[0] not in ("0", "root"), (name, user)
        host = attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"], name
        assert "no-new-privileges" in host["SecurityOpt"] and host["NetworkMode"] == "host", name
    # ... and the files they wrote belong to that user (root here hands the tree to the image's UID 1000).
    expected_uid = 1000 if os.getuid() == 0 else os.getuid()
    written = [root / "preprocess" / "manifest.parquet", root / "submit" / "submission.csv"]
    assert {p.stat().st_uid for p in written} == {expected_uid}

    # Steps logged to the MLflow server, whose artifacts went to S3.
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    experiment = client.get_experiment_by_name("finegrain-sample")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) >= 1 + 4, [r.info.run_name for r in runs]  # the parent and one per member at least
    artifacts = storage.list_uris(f"s3://{mlflow_server.artifact_bucket}/artifacts")
    assert artifacts, "no MLflow artifact reached S3"
