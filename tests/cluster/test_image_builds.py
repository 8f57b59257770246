"""Checks on built images, run only under `make test-containers` (FINEGRAIN_DOCKER_TESTS=1, with the images
named by FINEGRAIN_TEST_IMAGE / FINEGRAIN_TEST_MLFLOW_IMAGE built by `make images-cpu images-mlflow`).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support.images import run_host_index
from tests.support.paths import REPO as ROOT

docker_only = pytest.mark.skipif(
    os.environ.get("FINEGRAIN_DOCKER_TESTS") != "1", reason="make test-containers (FINEGRAIN_DOCKER_TESTS=1)"
)
CPU_IMAGE = os.environ.get("FINEGRAIN_TEST_IMAGE", "finegrain:latest-cpu")
MLFLOW_IMAGE = os.environ.get("FINEGRAIN_TEST_MLFLOW_IMAGE", "finegrain-mlflow:3.17.2")


def _docker_run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "host", *args], capture_output=True, text=True, timeout=timeout
    )


@docker_only
def test_cpu_image_runs_as_uid_1000_with_configs_in_reach():
    # the default --config (configs/sample.yaml) resolves from the image's working directory
    out = _docker_run(
        CPU_IMAGE, "python", "-c",
        "import os, finegrain, kfp; from finegrain.config import load_config; "
        "print(os.getuid(), load_config('configs/sample.yaml').data.folds)",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1000", "2"]


@docker_only
def test_cpu_image_matplotlib_cache_is_writable_for_any_uid():
    script = "import matplotlib, matplotlib.font_manager; print(matplotlib.get_cachedir())"
    for user in ("1000", "4242:4242"):
        out = _docker_run("--user", user, CPU_IMAGE, "python", "-c", script)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "/tmp/matplotlib", (user, out.stdout)
        assert "not a writable directory" not in out.stderr, (user, out.stderr)


@docker_only
def test_a_new_commit_rebuilds_only_the_metadata_layers():
    def layers(ref: str) -> list[str]:
        out = subprocess.run(
            ["docker", "history", "--no-trunc", "-q", ref], capture_output=True, text=True, check=True
        )
        return [line for line in out.stdout.split() if line != "<missing>"]

    revision = subprocess.run(
        ["docker", "image", "inspect", "-f", '{{index .Config.Labels "org.opencontainers.image.revision"}}',
         CPU_IMAGE], capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    tag = "finegrain-test:other-sha"
    base = subprocess.run(
        [str(ROOT / "images" / "base.sh")], capture_output=True, text=True, check=True, timeout=1800
    ).stdout.strip()
    # The same index arguments as `make images-cpu` gave the image (the host's pip settings, CPU_TORCH_INDEX).
    index_args = [
        arg
        for name, key in (("PIP_INDEX_URL", "index-url"), ("PIP_EXTRA_INDEX_URL", "extra-index-url"),
                          ("PIP_TRUSTED_HOST", "trusted-host"))
        for arg in ("--build-arg", f"{name}={run_host_index('pip', key).stdout.strip()}")
    ]  # fmt: skip
    build = subprocess.run(
        ["docker", "build", "--network", "host", "-f", "images/Dockerfile", "--build-arg", f"BASE_IMAGE={base}",
         *index_args, "--build-arg", "VARIANT=cpu",
         "--build-arg", f"TORCH_INDEX_URL={os.environ.get('CPU_TORCH_INDEX', '')}",
         "--build-arg", "NVIDIA_DRIVER_CAPABILITIES=", "--build-arg", f"GIT_SHA=not-{revision}", "-t", tag, "."],
        cwd=ROOT, env={**os.environ, "DOCKER_BUILDKIT": "0"}, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    try:
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
        theirs, ours = layers(CPU_IMAGE), layers(tag)
        # Layers are listed newest first: the common tail is everything the two builds share.
        shared = 0
        for a, b in zip(reversed(theirs), reversed(ours)):
            if a != b:
                break
            shared += 1
        # Only the metadata steps after ARG GIT_SHA (LABEL, ENV, USER, CMD) may differ.
        assert len(ours) - shared <= 4, (shared, len(ours))
        assert "Using cache" in build.stdout and build.stdout.count("Using cache") >= 10
    finally:
        subprocess.run(["docker", "rmi", tag], capture_output=True)


def _wait_healthy(port: int, name: str, timeout: float = 300) -> str:
    """Poll /health; returns the container's log (for the assertion message)."""
    import time
    import urllib.request

    deadline, healthy = time.monotonic() + timeout, False
    while time.monotonic() < deadline and not healthy:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                healthy = resp.status == 200
        except OSError:
            time.sleep(1)
    logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
    text = logs.stdout + logs.stderr
    assert healthy, f"{name} not healthy:\n{text[-3000:]}"
    return text


@docker_only
def test_mlflow_image_serves_plain_and_read_only():
    """Plain `docker run finegrain-mlflow` (SQLite store in its HOME) comes up; so does the image run the way
    manifests/base/mlflow.yaml runs it (read-only root filesystem, HOME=/tmp, no capabilities), with SQLite on
    /tmp standing in for PostgreSQL."""
    from tests.support.servers import free_port

    plain_port, locked_port = free_port(), free_port()
    plain, locked = f"finegrain-mlflow-plain-{plain_port}", f"finegrain-mlflow-ro-{locked_port}"
    runs = [
        ["--name", plain, MLFLOW_IMAGE, "server", "--host", "127.0.0.1", "--port", str(plain_port)],
        ["--name", locked, "--read-only", "--tmpfs", "/tmp", "-e", "HOME=/tmp", "--cap-drop", "ALL",
         "--security-opt", "no-new-privileges", MLFLOW_IMAGE, "server", "--host", "127.0.0.1",
         "--port", str(locked_port), "--backend-store-uri", "sqlite:////tmp/mlflow.db"],
    ]  # fmt: skip
    try:
        for args in runs:  # both start at once: each spends a minute migrating its new database
            subprocess.run(["docker", "run", "-d", "--rm", "--network", "host", *args],
                           check=True, capture_output=True, timeout=120)  # fmt: skip
        logs = _wait_healthy(plain_port, plain)
        assert "unable to open database file" not in logs
        listing = subprocess.run(
            ["docker", "exec", plain, "ls", "/home/mlflow"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert "mlflow.db" in listing, listing
        _wait_healthy(locked_port, locked)
    finally:
        subprocess.run(["docker", "rm", "-f", plain, locked], capture_output=True)
