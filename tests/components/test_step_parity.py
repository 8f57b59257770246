"""One code path: every step run by hand (`finegrain <step>`) leaves the same files and the same MLflow records as
the same step run by its KFP component on the same inputs.

The whole chain runs twice on the sample data with a tiny backbone: once through the CLI into `cli/<step>`,
once through the plan and each component's `python_func` into a work root laid out by orchestration.layout
(each task's outputs under its key), each with its own tracking store. Then, step by step: the same file
names, and MLflow runs with the same names, param keys, metric keys and artifacts; and each store holds one
registered model version.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kfp import dsl
from typer.testing import CliRunner

from components.calibrate.component import calibrate
from components.ensemble.component import ensemble
from components.plan.component import plan_run
from components.preprocess.component import preprocess
from components.register.component import register
from components.regroup.component import regroup
from components.submit.component import submit
from components.train.component import train
from finegrain.cli import app
from finegrain.config import config_to_text, load_config
from finegrain.orchestration import layout
from tests.support.paths import REPO

pytestmark = pytest.mark.slow

BACKBONE = "test_efficientnet"
FOLDS = 2
STEPS = ["preprocess", "train", "regroup", "calibrate", "ensemble", "submit", "register"]


def _overrides(tmp: Path, tracking_uri: str) -> list[str]:
    return [
        f"data.folds={FOLDS}", f"train.backbones=[{BACKBONE}]", "train.image_size=32", "train.batch_size=16",
        "train.epochs=1", "train.max_steps_per_epoch=2", "train.num_workers=0", "train.head.embedding_dim=16",
        "train.warmup_epochs=0", "train.swa.enabled=false", "train.tta=[identity]", f"train.cache_dir={tmp / 'cache'}",
        "regroup.perplexity=5", "preprocess.workers=1", f"tracking.uri={tracking_uri}",
    ]  # fmt: skip


def _store(tmp: Path, template: Path) -> str:
    import shutil

    shutil.copyfile(template, tmp / "mlruns.db")
    return f"sqlite:///{tmp / 'mlruns.db'}"


def _cli(args: list[str], overrides: list[str]) -> None:
    sets = [a for o in overrides for a in ("--set", o)]
    result = CliRunner().invoke(app, [*args, "--config", str(REPO / "configs" / "sample.yaml"), *sets])
    assert result.exit_code == 0, result.output


def _view(root: Path) -> dict[str, list[Path]]:
    """The step directories of a `finegrain <step> --out` layout (orchestration.layout's view)."""
    dirs = {step: [Path(layout.step_uri(str(root), step))] for step in STEPS}
    dirs["train"] = [Path(layout.member_uri(str(root), BACKBONE, k)) for k in range(FOLDS)]
    return dirs


def _by_cli(root: Path, data: Path, template: Path) -> tuple[dict[str, list[Path]], str]:
    root.mkdir()
    uri = _store(root, template)
    sets = _overrides(root, uri)
    out = root / "cli"
    _cli(["preprocess", "--data", str(data), "--out", str(out / "preprocess")], sets)
    members = []
    for k in range(FOLDS):
        member = layout.member_uri(str(out), BACKBONE, k)
        _cli(["train", "--manifest", str(out / "preprocess"), "--fold", str(k), "--backbone", BACKBONE,
              "--out", member], sets)  # fmt: skip
        members += ["--members", member]
    _cli(["regroup", *members, "--out", str(out / "regroup")], sets)
    _cli(["calibrate", *members, "--out", str(out / "calibrate")], sets)
    _cli(["ensemble", *members, "--calibration", str(out / "calibrate"), "--groups", str(out / "regroup"),
          "--manifest", str(out / "preprocess"), "--out", str(out / "ensemble")], sets)  # fmt: skip
    _cli(["submit", "--ensemble", str(out / "ensemble"), "--data", str(data), "--out", str(out / "submit")], sets)
    _cli(["register", *members, "--calibration", str(out / "calibrate"), "--ensemble", str(out / "ensemble"),
          "--data", str(data), "--out", str(out / "register")], sets)  # fmt: skip
    return _view(out), uri


SPECS = [f"{step}_spec" for step in STEPS if step != "train"]  # the plan's per-step outputs
PLAN_OUTPUTS = ("config", "data_hash", "code_version", "run_root", "page", *SPECS)


def _by_components(root: Path, data: Path, template: Path) -> tuple[dict[str, list[Path]], str]:
    root.mkdir()
    uri = _store(root, template)
    work = f"pipeline.work_root={root / 'work'}"
    cfg = load_config(REPO / "configs" / "sample.yaml", [*_overrides(root, uri), work])
    outs = {k: str(root / "plan" / k) for k in PLAN_OUTPUTS}
    items = plan_run.python_func(config_to_text(cfg), [], str(data), "kfp-parity", **outs)
    spec = {k: Path(v).read_text(encoding="utf-8") for k, v in outs.items()}

    def art(kind, name):
        return kind(name=name, uri=str(root / "kfp" / name), metadata={})

    pre = art(dsl.Artifact, "preprocess")
    preprocess.python_func(spec["preprocess_spec"], pre, art(dsl.Markdown, "prep-report"), art(dsl.HTML, "page"))
    members = []
    for k, item in enumerate(items):
        member = art(dsl.Artifact, f"member{k}")
        train.python_func(pre, item["backbone"], str(item["fold"]), item["spec"], member,
                          art(dsl.Metrics, f"m{k}"), art(dsl.ClassificationMetrics, f"c{k}"),
                          art(dsl.HTML, f"e{k}"))  # fmt: skip
        members.append(member)
    groups = art(dsl.Artifact, "groups")
    regroup.python_func(spec["regroup_spec"], members, groups, art(dsl.HTML, "tsne"))
    cal = art(dsl.Artifact, "cal")
    calibrate.python_func(spec["calibrate_spec"], members, cal, art(dsl.HTML, "reliability"),
                          art(dsl.Metrics, "cal-m"))  # fmt: skip
    ens = art(dsl.Artifact, "ens")
    ensemble.python_func(spec["ensemble_spec"], members, cal, groups, ens, art(dsl.Markdown, "weights"),
                         art(dsl.Metrics, "em"), art(dsl.HTML, "errors"), pre)  # fmt: skip
    submit.python_func(spec["submit_spec"], ens, art(dsl.Dataset, "submission"), art(dsl.Markdown, "check"))
    register.python_func(spec["register_spec"], members, cal, ens, art(dsl.Artifact, "reg"),
                         art(dsl.Markdown, "r"))  # fmt: skip
    # each task's outputs are in its key's directory (orchestration.layout)
    dirs: dict[str, list[Path]] = {}
    for text in [spec[name] for name in SPECS] + [item["spec"] for item in items]:
        task = json.loads(text)
        out = layout.output_uri(task["work"], task["task"], task["key"])
        dirs.setdefault(layout.task_step(task["task"]), []).append(Path(out))
    return dirs, uri


@pytest.fixture(scope="module")
def runs(sample_dir, mlflow_db_template, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parity")
    return _by_cli(tmp / "a", sample_dir, mlflow_db_template), _by_components(tmp / "b", sample_dir, mlflow_db_template)


def _files(step_dir: Path) -> set[str]:
    return {p.relative_to(step_dir).as_posix() for p in step_dir.rglob("*") if p.is_file() and p.name != ".lock"}


def test_pages_show_pictures_by_cli_and_by_component(runs):
    """The pages a person opens have thumbnails whichever way the steps ran."""
    for dirs, _ in runs:
        pages = [dirs["preprocess"][0] / "report.html", dirs["train"][0] / "errors.html",
                 dirs["ensemble"][0] / "error_analysis.html"]  # fmt: skip
        for page in pages:
            assert "data:image/jpeg;base64," in page.read_text(encoding="utf-8"), page


@pytest.mark.parametrize("step", STEPS)
def test_step_writes_the_same_files_by_cli_and_by_component(runs, step):
    (cli_dirs, _), (component_dirs, _) = runs
    assert len(cli_dirs[step]) == len(component_dirs[step])
    for by_cli, by_component in zip(cli_dirs[step], component_dirs[step]):
        cli_files, component_files = _files(by_cli), _files(by_component)
        assert cli_files == component_files, (step, cli_files ^ component_files)
        assert {"config.yaml"} <= cli_files and ({"summary.json"} <= cli_files or step == "train")
    if step != "train":
        summary = json.loads((by_cli / "summary.json").read_text(encoding="utf-8"))
        assert summary.keys() == json.loads((by_component / "summary.json").read_text(encoding="utf-8")).keys()


def _records(uri: str) -> dict[str, tuple]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    records = {}
    for run in client.search_runs(experiments):
        artifacts = sorted(a.path for a in client.list_artifacts(run.info.run_id))
        # system/* metrics are sampled every few seconds: which ones a short run got depends on timing alone
        metrics = sorted(k for k in run.data.metrics if not k.startswith("system/"))
        records[run.info.run_name] = (sorted(run.data.params), metrics, artifacts)
    return records


def test_cli_and_components_leave_the_same_mlflow_records(runs):
    from mlflow import MlflowClient

    (_, cli_uri), (_, component_uri) = runs
    by_cli, by_component = _records(cli_uri), _records(component_uri)
    assert {"preprocess", "regroup", "calibrate", "ensemble", "submit"} <= set(by_cli)
    assert by_cli == by_component
    for uri in (cli_uri, component_uri):  # the register step registered one version in each store
        versions = MlflowClient(tracking_uri=uri).search_model_versions("name='finegrain-ensemble'")
        assert len(versions) == 1
