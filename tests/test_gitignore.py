"""What running the project writes into the checkout stays out of `git status`; its sources stay in."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.paths import REPO as ROOT

RUN_OUTPUTS = [
    "runs/sample/latest/summary.json",  # make run (OUT=runs/sample)
    "runs/containers/mlflow/mlruns.db",  # make run-containers
    "runs/bench/train.json",  # bench/train_throughput.py --json, as its docstring suggests
    "data/sample/answer_key.json",  # make sample
    "mlruns.db",  # the embedded MLflow store (tracking.uri sqlite:///mlruns.db)
    "mlartifacts/1/0123abcd/artifacts/model/model.pt",  # its artifacts, beside the database
    "mlflow.db",  # a bare `mlflow ui` / `mlflow server`
    "mlruns/0/meta.yaml",
    "local_outputs/training/x.json",  # kfp.local without a pipeline root
    "pipelines/training.yaml",  # make compile
]
SOURCES = ["pipelines/training.py", "pipelines/submit.py", "configs/hecto.yaml", "Makefile", "mk/cluster.mk"]


def _ignored(paths: list[str]) -> set[str]:
    # --no-index: judge the rules alone, whether or not a path exists or is tracked
    proc = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"], input="\n".join(paths), cwd=ROOT,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr  # 1: none ignored
    return set(proc.stdout.split())


@pytest.fixture(scope="module", autouse=True)
def _git_checkout():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")


def test_run_outputs_are_ignored():
    assert set(RUN_OUTPUTS) - _ignored(RUN_OUTPUTS) == set()


def test_sources_are_not_ignored():
    assert _ignored(SOURCES) == set()
