"""The first local pipeline run, shared by the modules that read it (a run costs minutes on 2 cores).

tests/orchestration/test_local_model.py reads it as it is (the registered champion, served and used for batch
prediction); tests/orchestration/test_local_run.py then reruns on the same outputs (new data, changed settings,
gc). pytest runs the files in name order, so the model tests see the first run's champion.
"""

import shutil
import time
from pathlib import Path

import pytest

from finegrain.config import load_config
from tests.support.local_runs import LITE0
from tests.support.paths import REPO


@pytest.fixture(scope="session")
def dataset(sample_dir, tmp_path_factory) -> Path:
    """A private copy of the sample: a test in test_local_run.py adds images to it."""
    return Path(shutil.copytree(sample_dir, tmp_path_factory.mktemp("data") / "sample"))


@pytest.fixture(scope="session")
def local_run(dataset, tmp_path_factory):
    """(config, its outputs directory, its summary): the whole pipeline through kfp.local at small settings."""
    from finegrain.orchestration.local import run_pipeline_locally

    out = tmp_path_factory.mktemp("run")
    cfg = load_config(
        REPO / "configs" / "sample.yaml",
        [
            # one backbone, two folds: the reruns retrain every member, so each member costs twice
            f"train.backbones=[{LITE0}]",
            "train.epochs=1",
            "train.image_size=64",
            "train.batch_size=16",
            "train.max_steps_per_epoch=6",
            "train.tta=[identity, hflip]",
            "regroup.perplexity=5",
            f"tracking.uri=sqlite:///{out}/mlruns.db",
        ],
    )
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(out)  # the relative sqlite:/// tracking store lands in the run directory
        summary = run_pipeline_locally(cfg, data=str(dataset), out=str(out / "outputs"))
    print(f"local pipeline run (first): {time.monotonic() - started:.0f} s")
    return cfg, out / "outputs", summary
