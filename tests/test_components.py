"""Component layer: each KFP component's `python_func` called directly, with real artifact objects.

Checks what the wrapper adds on top of its step: the outputs mirrored into the artifact directory, the
pointer to the work URI, and the Kubeflow UI artifacts (Markdown, HTML, Metrics).
"""

import json
import sys
from pathlib import Path

import pytest
from kfp import dsl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthetic_members import make_members  # noqa: E402

from components.calibrate.component import calibrate  # noqa: E402
from components.ensemble.component import ensemble  # noqa: E402
from components.preprocess.component import preprocess  # noqa: E402
from components.regroup.component import regroup  # noqa: E402
from components.tracking.component import start_run  # noqa: E402
from finegrain.component_io import config_to_text, parent_run_id  # noqa: E402
from finegrain.config import load_config  # noqa: E402


def _artifact(kind, tmp_path: Path, name: str):
    return kind(name=name, uri=str(tmp_path / "kfp" / name), metadata={})


@pytest.fixture()
def config_text(tmp_path):
    cfg = load_config(ROOT / "configs/sample.yaml", ["tracking.enabled=false", "regroup.perplexity=5"])
    return config_to_text(cfg)


def test_start_run_writes_the_run_id_artifact(config_text, tmp_path):
    run = _artifact(dsl.Artifact, tmp_path, "run")
    assert start_run.python_func(config_text, "p", "hash", "v1", run) == ""
    assert parent_run_id(run.path) == ""  # tracking off: no parent, downstream steps log nothing


def test_preprocess_mirrors_outputs_and_reports(config_text, sample_dir, tmp_path):
    result = _artifact(dsl.Artifact, tmp_path, "result")
    report = _artifact(dsl.Markdown, tmp_path, "report")
    summary = json.loads(
        preprocess.python_func(config_text, str(sample_dir), "hash", "v1", str(tmp_path / "work"), result, report)
    )
    work = tmp_path / "work" / "preprocess"
    for name in ("manifest.parquet", "classes.json", "report.md", "summary.json"):
        assert (work / name).exists() and (Path(result.path) / name).exists(), name
    assert json.loads((Path(result.path) / "source.json").read_text())["work_uri"] == str(work)
    assert Path(report.path).read_text(encoding="utf-8").startswith("# Preprocess report")
    assert result.metadata["data_hash"] == "hash" and summary["status"]["corrupt"] >= 1


@pytest.fixture()
def members(tmp_path):
    uris = make_members(tmp_path, n_classes=9, n_per_class=20, backbones=("a", "b"), folds=2)
    return [dsl.Artifact(name=f"m{i}", uri=u, metadata={}) for i, u in enumerate(uris)]


def test_post_training_components_fill_the_ui_artifacts(config_text, members, tmp_path):
    work, run = str(tmp_path / "work"), _artifact(dsl.Artifact, tmp_path, "run")
    start_run.python_func(config_text, "p", "hash", "v1", run)

    groups, page = _artifact(dsl.Artifact, tmp_path, "groups"), _artifact(dsl.HTML, tmp_path, "tsne")
    regroup.python_func(config_text, members, work, run, groups, page)
    html = Path(page.path).read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") or "<html" in html
    assert "data:image/png;base64," in html  # self-contained: the plot is embedded
    assert json.loads((Path(groups.path) / "groups.json").read_text())["groups"]

    cal, cal_page = _artifact(dsl.Artifact, tmp_path, "cal"), _artifact(dsl.HTML, tmp_path, "reliability")
    cal_metrics = _artifact(dsl.Metrics, tmp_path, "cal_metrics")
    calibrate.python_func(config_text, members, work, run, cal, cal_page, cal_metrics)
    assert "data:image/png;base64," in Path(cal_page.path).read_text(encoding="utf-8")
    assert cal_metrics.metadata["mean_nll_after"] < cal_metrics.metadata["mean_nll_before"]

    ens, report = _artifact(dsl.Artifact, tmp_path, "ens"), _artifact(dsl.Markdown, tmp_path, "weights")
    ens_metrics = _artifact(dsl.Metrics, tmp_path, "ens_metrics")
    ensemble.python_func(config_text, members, cal, groups, work, run, ens, report, ens_metrics)
    assert (Path(ens.path) / "test_probs.npz").exists()
    assert ens_metrics.metadata["ensemble_oof_logloss"] <= ens_metrics.metadata["uniform_oof_logloss"] + 1e-9
    assert "weight" in Path(report.path).read_text(encoding="utf-8").lower()
