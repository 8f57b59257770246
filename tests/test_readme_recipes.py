"""Every command in the README's recipe tables (`| what | command |`) runs as written, or is skipped by name with
the reason (a cluster, a GPU, minutes of benchmarking, this test suite itself).

The commands run with bash in a scratch copy of the repository's top level (Makefile, mk/, configs/,
pipelines/, pyproject.toml) whose `.venv` is the interpreter running the tests, freshly stamped as installed,
so `make install` has nothing to do and nothing is written into the checkout or the real venv. Only
`configs/sample.yaml` and `configs/small.yaml` differ from the repository's: each is the real file with the
speed-only settings below, so the whole pipeline runs in a minute or two; the commands, paths and their order are the README's own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.datasets import imagefolder
from tests.support.paths import REPO

RECIPE_HEADER = re.compile(r"^\|\s*what\s*\|\s*command\s*\|\s*$")
# A code span is a command when it starts with a program (the others name a variable or a file it writes).
COMMAND = re.compile(
    r"^(make|bash|sh|python3?|kubectl|docker|finegrain|\.venv/bin/\S+|\./\S+|\S+\.(sh|py))(\s|$)"
)
# Fewer epochs and pixels; everything else (backbones, folds, heads, steps) as in the repository's file.
SPEED = {"train": {"epochs": 1, "image_size": 32, "tta": ["identity"], "swa": {"enabled": False}}}
# configs/small.yaml's linear-probe warm-up needs an epoch after it; one epoch fine-tunes from the start.
SPEED_SMALL = {"train": {**SPEED["train"], "linear_probe_epochs": 0}}
# A README placeholder and what the test puts in its place.
DATASET_PLACEHOLDER = "/path/to/dataset"

QUICK, PIPELINE, STEPS, SERVING = "quick", "pipeline", "steps", "serving"
RECIPES = {
    "make help": QUICK,
    "make": QUICK,
    "make install": QUICK,
    ".venv/bin/finegrain make-sample --out data/sample": QUICK,
    "make compile CONFIG=configs/hecto.yaml": QUICK,
    "make run": PIPELINE,
    ".venv/bin/finegrain run --config configs/sample.yaml --out runs/sample": PIPELINE,
    f".venv/bin/finegrain run --config configs/small.yaml --data {DATASET_PLACEHOLDER} --out runs/mydata": PIPELINE,
    ".venv/bin/finegrain run --config configs/sample.yaml --out runs/sample --set ensemble.method=uniform": PIPELINE,
    ".venv/bin/finegrain gc --out runs/sample --keep 1": PIPELINE,
    ".venv/bin/finegrain preprocess --data data/sample --out runs/s/preprocess": STEPS,
    ".venv/bin/finegrain train --manifest runs/s/preprocess --fold 0 --backbone efficientnet_lite0 "
    "--out runs/s/train/efficientnet_lite0/fold0": STEPS,
    ".venv/bin/finegrain train --manifest runs/s/preprocess --fold 1 --backbone efficientnet_lite0 "
    "--out runs/s/train/efficientnet_lite0/fold1": STEPS,
    ".venv/bin/finegrain regroup --members runs/s/train/efficientnet_lite0/fold0 "
    "--members runs/s/train/efficientnet_lite0/fold1 --out runs/s/regroup": STEPS,
    ".venv/bin/finegrain calibrate --members runs/s/train/efficientnet_lite0/fold0 "
    "--members runs/s/train/efficientnet_lite0/fold1 --out runs/s/calibrate": STEPS,
    ".venv/bin/finegrain ensemble --members runs/s/train/efficientnet_lite0/fold0 "
    "--members runs/s/train/efficientnet_lite0/fold1 --calibration runs/s/calibrate --groups runs/s/regroup "
    "--manifest runs/s/preprocess --out runs/s/ensemble": STEPS,
    ".venv/bin/finegrain submit --ensemble runs/s/ensemble --data data/sample --out runs/s/submit": STEPS,
    ".venv/bin/finegrain register --members runs/s/train/efficientnet_lite0/fold0 "
    "--members runs/s/train/efficientnet_lite0/fold1 --calibration runs/s/calibrate --ensemble runs/s/ensemble "
    "--data data/sample --out runs/s/register": STEPS,
    ".venv/bin/finegrain predict --model models:/finegrain-ensemble@champion --images data/sample/test "
    "--out predictions.csv": SERVING,
    "make predict-pipeline-local IMAGES=data/sample/test": SERVING,
}
SKIPPED = {
    "make submit-pipeline CONFIG=configs/hecto.yaml": "needs a Kubeflow cluster (KFP_HOST); "
    "tests/pipelines/test_submit_pipeline.py checks its requests against a stand-in KFP API",
    "make schedule CONFIG=configs/hecto.yaml": "needs a Kubeflow cluster (KFP_HOST); "
    "tests/pipelines/test_submit_pipeline.py checks its requests against a stand-in KFP API",
    "make predict-pipeline CONFIG=configs/hecto.yaml IMAGES=s3://finegrain-data/new "
    "PREDICTIONS=s3://finegrain-artifacts/predictions/new.csv": "needs a Kubeflow cluster (KFP_HOST); "
    "tests/pipelines/test_predict_pipeline.py checks the run it submits against a stand-in KFP API",
    "make serve": "a server that runs until stopped; tests/orchestration/test_local_model.py starts the serving "
    "manifest's `mlflow models serve --env-manager local` on 127.0.0.1 after a local run and posts images to it",
    "make test-fast": "the test suite itself, which this test is part of",
    "make bench-preprocess": "a benchmark (minutes of CPU) that also needs imagededup, not a dependency",
    "make bench-dedup": "a benchmark that needs imagededup and Debian's opencv-doc and mate-backgrounds photos; "
    "tests/bench/test_dedup.py checks its kinds of copy, photo set and scoring",
    "make bench-regroup": "a benchmark: minutes of CPU (30,000-point t-SNE against scikit-learn's)",
    "make bench-train": "a benchmark meant for a GPU (its CPU defaults only smoke-test the code path)",
    "make bench-decode": "a benchmark: minutes of decoding 600x450 and 1920x1440 JPEGs",
    "make bench-quality": "a benchmark: three whole pipeline runs on Fashion-MNIST photos (about 15 minutes of "
    "CPU; needs Debian's dataset-fashion-mnist); tests/bench/test_quality.py checks its split, writer and table",
    "bash bench/gpu_smoke.sh": "needs a CUDA GPU (nvidia-smi, train.device=cuda)",
    "make screenshots": "needs Debian's Chromium and renders the pages of a finished `make run` (minutes of CPU)",
}


def readme_commands() -> list[str]:
    """The code spans of the command column of every `| what | command |` table, in README order."""
    commands, in_table = [], False
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        if RECIPE_HEADER.match(line):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            in_table = False
        if in_table and not re.match(r"^\|[-| ]+\|$", line):
            cells = line.strip().strip("|").split("|")
            commands += [span for span in re.findall(r"`([^`]+)`", cells[-1]) if COMMAND.match(span)]
    return commands


def in_readme_order(kind: str) -> list[str]:
    return [c for c in readme_commands() if RECIPES.get(c) == kind]


def test_every_recipe_is_run_or_skipped_with_a_reason() -> None:
    found = readme_commands()
    assert len(found) >= 10, found  # the table is there and parsed
    unknown = [c for c in found if c not in RECIPES and c not in SKIPPED]
    assert not unknown, f"README recipes this test neither runs nor skips by name: {unknown}"
    stale = sorted((set(RECIPES) | set(SKIPPED)) - set(found))
    assert not stale, f"listed here but no longer in the README: {stale}"
    assert not [c for c in found if "..." in c or "<" in c], (
        "a recipe with a placeholder cannot run as written"
    )


@pytest.mark.parametrize("command", sorted(SKIPPED))
def test_recipe_that_cannot_run_here(command: str) -> None:
    pytest.skip(f"{command}: {SKIPPED[command]}")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch repository top level whose `.venv` is this interpreter's environment, stamped installed."""
    root = tmp_path_factory.mktemp("recipes")
    venv = Path(sys.prefix)
    if not (venv / "bin" / "finegrain").exists():
        pytest.skip(f"no finegrain console script in {venv}/bin (not installed into this environment)")
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(REPO / name, root / name)
    for name in ("mk", "configs", "pipelines"):
        shutil.copytree(
            REPO / name, root / name, ignore=shutil.ignore_patterns("*.yaml") if name == "pipelines" else None
        )
    for name, speed in (("sample.yaml", SPEED), ("small.yaml", SPEED_SMALL)):
        config = yaml.safe_load((REPO / "configs" / name).read_text(encoding="utf-8"))
        _merge(config, speed)
        (root / "configs" / name).write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    (root / ".venv").mkdir()
    for entry in venv.iterdir():  # the environment itself, linked; only the install stamp is this sandbox's
        if entry.name != ".installed":
            (root / ".venv" / entry.name).symlink_to(entry)
    (root / ".venv" / ".installed").touch()  # newer than the copied pyproject.toml: `make install` is a no-op
    imagefolder(root / "mydata", {"sedan": 4, "suv": 4, "truck": 4}, n_test=3, size=(64, 48))
    return root


def _merge(tree: dict, changes: dict) -> None:
    for key, value in changes.items():
        if isinstance(value, dict):
            _merge(tree.setdefault(key, {}), value)
        else:
            tree[key] = value


def run_recipe(sandbox: Path, command: str, timeout: int = 900) -> str:
    """Run one README command with bash in the sandbox; its output, or a failure showing the output's tail."""
    env = {k: v for k, v in os.environ.items() if k not in ("CONFIG", "OUT", "VENV", "PYTHON", "MAKEFLAGS")}
    env.update(NO_ALBUMENTATIONS_UPDATE="1", MPLBACKEND="Agg")
    line = command.replace(DATASET_PLACEHOLDER, str(sandbox / "mydata"))
    proc = subprocess.run(
        ["bash", "-c", line],
        cwd=sandbox,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"`{command}` exited {proc.returncode}:\n{output[-4000:]}"
    return output


def _with_sample(sandbox: Path) -> None:
    if not (sandbox / "data" / "sample" / "answer_key.json").exists():
        run_recipe(sandbox, ".venv/bin/finegrain make-sample --out data/sample")


@pytest.mark.parametrize("command", in_readme_order(QUICK))
def test_quick_recipe_runs_as_written(sandbox: Path, command: str) -> None:
    output = run_recipe(sandbox, command)
    if command in ("make", "make help"):
        assert "make run" in output and "make test" in output
    if command == "make compile CONFIG=configs/hecto.yaml":
        assert (sandbox / "pipelines" / "training.yaml").stat().st_size > 0


@pytest.mark.slow
def test_pipeline_recipes_run_as_written(sandbox: Path) -> None:
    """`make run`, its spelled-out form (an unchanged rerun: every step from the cache), and the same recipe on an
    ImageFolder set of the user's with configs/small.yaml, the CPU recipe for one's own data."""
    _with_sample(sandbox)
    for command in in_readme_order(PIPELINE):
        output = run_recipe(sandbox, command)
        if " gc " in command:  # after the runs above: older outputs freed, the latest run's kept
            assert (sandbox / "runs" / "sample" / "submit" / "submission.csv").is_file(), output
            continue
        assert "(valid: True)" in output, output[-2000:]
        out = sandbox / ("runs/mydata" if DATASET_PLACEHOLDER in command else "runs/sample")
        assert (out / "submit" / "submission.csv").is_file()
        if DATASET_PLACEHOLDER in command:
            # The sample's alias pair names no class of this set; configs/small.yaml declares none.
            assert ("warning: data.aliases: ignoring 1 pair(s)" in output) == ("configs/sample.yaml" in command)
            header = (out / "submit" / "submission.csv").read_text(encoding="utf-8-sig").splitlines()[0]
            assert header == "ID,sedan,suv,truck"


@pytest.mark.slow
def test_step_by_step_recipe_runs_as_written(sandbox: Path) -> None:
    """The one-step-at-a-time rows, in the README's order, make a validated submission and a registered model."""
    _with_sample(sandbox)
    steps = in_readme_order(STEPS)
    assert [c.split()[1] for c in steps] == [
        "preprocess", "train", "train", "regroup", "calibrate", "ensemble", "submit", "register"
    ]  # fmt: skip
    for command in steps:
        run_recipe(sandbox, command)
    check = (sandbox / "runs/s/submit/submission_check.json").read_text(encoding="utf-8")
    assert '"ok": true' in check
    assert "finegrain-ensemble/" in (sandbox / "runs/s/register/registration.json").read_text(
        encoding="utf-8"
    )


@pytest.mark.slow
def test_serving_recipes_run_as_written(sandbox: Path) -> None:
    """After `make run` (the pipeline recipes above; run here when this test runs alone), `finegrain predict` and the
    batch-prediction pipeline score the sample's test images with the champion: one row per image, in order."""
    if not (sandbox / "mlruns.db").exists():
        _with_sample(sandbox)
        run_recipe(sandbox, "make run")
    for command in in_readme_order(SERVING):
        run_recipe(sandbox, command)
    ids = sorted(p.stem for p in (sandbox / "data" / "sample" / "test").glob("*.jpg"))
    for out in ("predictions.csv", "runs/predict/predictions.csv"):
        rows = (sandbox / out).read_text(encoding="utf-8-sig").splitlines()
        assert [r.split(",", 1)[0] for r in rows] == ["ID", *ids], out

