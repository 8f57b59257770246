"""Component layer: each KFP component's `python_func` called directly, with real artifact objects.

Checks what the wrapper adds on top of its step: the outputs mirrored into the artifact directory, the
pointer to the work URI, the Kubeflow UI artifacts (Markdown, HTML, Metrics) and the line saying why the task
ran or was reused; and what the plan task gives each step (its spec: key, settings, inputs' keys).
"""

import json
from pathlib import Path

import pytest
from kfp import dsl

from components.calibrate.component import calibrate
from components.ensemble.component import ensemble
from components.plan.component import plan_run
from components.preprocess.component import preprocess
from components.regroup.component import regroup
from components.tracking.component import end_run, start_run
from finegrain.config import ConfigError, config_to_text, load_config
from finegrain.orchestration import layout
from finegrain.orchestration.parent_run import parent_run_id
from tests.support.paths import REPO as ROOT
from tests.support.synthetic_members import make_members


def _artifact(kind, tmp_path: Path, name: str):
    return kind(name=name, uri=str(tmp_path / "kfp" / name), metadata={})


@pytest.fixture()
def config_text(tmp_path):
    cfg = load_config(
        ROOT / "configs/sample.yaml",
        ["tracking.enabled=false", "regroup.perplexity=5", f"pipeline.work_root={tmp_path / 'work'}"],
    )
    return config_to_text(cfg)


def test_start_run_leaves_the_run_id_in_the_run_directory(config_text, tmp_path):
    work = str(tmp_path / "work")
    assert parent_run_id(work) == ""  # no parent run opened yet: steps log without one
    assert start_run.python_func(config_text, "p", "hash", "v1", work, "kfp-1") == ""
    assert parent_run_id(work) == ""  # tracking off: no parent, downstream steps log nothing
    assert json.loads((tmp_path / "work" / "mlflow_parent_run.json").read_text())["kfp_run_id"] == "kfp-1"


def _status(state: str) -> dsl.PipelineTaskFinalStatus:
    return dsl.PipelineTaskFinalStatus(
        state=state, pipeline_job_resource_name="job", pipeline_task_name="exit-handler-1",
        error_code=None if state == "SUCCEEDED" else 1, error_message=None,
    )


@pytest.mark.parametrize(
    "state, expected", [("SUCCEEDED", "FINISHED"), ("FAILED", "FAILED"), ("CANCELLED", "KILLED")]
)
def test_exit_task_ends_the_parent_run_with_the_pipeline_status(state, expected, sqlite_tracking_uri, tmp_path):
    from mlflow import MlflowClient

    cfg = load_config(ROOT / "configs/sample.yaml", [f"tracking.uri={sqlite_tracking_uri}"])
    text = config_to_text(cfg)
    work = str(tmp_path / "work")
    parent = start_run.python_func(text, "p", "hash", "v1", work, "kfp-7")
    other = start_run.python_func(text, "q", "hash", "v1", str(tmp_path / "w2"), "kfp-8")  # another pipeline run
    client = MlflowClient(tracking_uri=sqlite_tracking_uri)
    assert parent and parent_run_id(work) == parent and client.get_run(parent).info.status == "RUNNING"
    # the exit task sees the pipeline's parameters (raw config + overrides), not the planned config
    assert end_run.python_func(text, ["train.epochs=1"], "kfp-7", _status(state)) == parent
    assert client.get_run(parent).info.status == expected
    assert client.get_run(other).info.status == "RUNNING"


def test_parent_run_shows_the_config_key_params_and_the_headline(sqlite_tracking_uri, tmp_path):
    """A person opening the parent run sees what the run was and what it gave without opening a child run."""
    from mlflow import MlflowClient

    cfg = load_config(ROOT / "configs/sample.yaml", [f"tracking.uri={sqlite_tracking_uri}"])
    text, run_root = config_to_text(cfg), tmp_path / "work" / "runs" / "r1"
    outputs = {
        "preprocess/k1/summary.json": {"images": 435, "train": 371, "test": 64, "classes": 15, "training_rows": 353},
        "ensemble/k2/ensemble.json": {"ensemble_oof_logloss": 0.3, "uniform_oof_logloss": 0.4,
                                      "member_oof_logloss": {"a/fold0": 0.5, "b/fold0": 0.45},
                                      "hierarchical": {"used": True}},
        "ensemble/k2/summary.json": {"ensemble_oof_accuracy": 0.9},
        "submit/k3/submission_check.json": {"valid": True},
        "register/k4/registration.json": {"registered_model": "finegrain-ensemble/3"},
    }  # fmt: skip
    work = tmp_path / "work"
    for rel, value in outputs.items():  # the outputs the run used (ran or reused), named by its plan
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(json.dumps(value))
    tasks = {step: {"uri": str(work / step / key)} for step, key in
             (("preprocess", "k1"), ("ensemble", "k2"), ("submit", "k3"), ("register", "k4"))}  # fmt: skip
    run_root.mkdir(parents=True)
    (run_root / layout.RUN_FILE).write_text(json.dumps({"tasks": tasks}))
    parent = start_run.python_func(text, "p", "hash", "v1", str(run_root), "kfp-h")
    end_run.python_func(text, [], "kfp-h", _status("SUCCEEDED"))
    client = MlflowClient(tracking_uri=sqlite_tracking_uri)
    run = client.get_run(parent)
    params, metrics = run.data.params, run.data.metrics
    assert params["data_hash"] == "hash" and params["backbones"] == "efficientnet_lite0, resnet10t"
    assert params["best_member"] == "b/fold0" and params["registered_model"] == "finegrain-ensemble/3"
    assert len(params) <= 20  # a few key settings; the whole config is the config.yaml artifact
    assert metrics["ensemble_oof_logloss"] == 0.3 and metrics["best_member_oof_logloss"] == 0.45
    assert metrics["submission_valid"] == 1.0 and metrics["n_images"] == 435 and metrics["n_members"] == 2
    assert {"config.yaml", "headline.json"} <= {a.path for a in client.list_artifacts(parent)}
    assert run.info.status == "FINISHED"


def test_exit_task_tolerates_a_config_that_never_resolved(config_text):
    assert end_run.python_func(config_text, ["train.no_such_key=1"], "kfp-9", _status("FAILED")) == ""


PLAN_OUTPUTS = ("config", "data_hash", "code_version", "run_root", "page", *(f"{s}_spec" for s in
                ("preprocess", "regroup", "calibrate", "ensemble", "submit", "register")))  # fmt: skip


def _plan(tmp_path, config_text: str, overrides: list, data_uri: str) -> tuple[list, dict]:
    outs = {k: str(tmp_path / "plan" / k) for k in PLAN_OUTPUTS}
    members = plan_run.python_func(config_text, overrides, data_uri, "kfp-1", **outs)
    return members, {k: Path(v).read_text(encoding="utf-8") for k, v in outs.items()}


def test_plan_resolves_overrides_fingerprints_data_and_fans_out(config_text, tmp_path):
    data = tmp_path / "data"
    (data / "train" / "a").mkdir(parents=True)
    (data / "train" / "a" / "x.jpg").write_bytes(b"one")
    members, out = _plan(tmp_path, config_text, ["data.folds=3", "train.backbones=[resnet10t]"], str(data))
    # the run's config, not compile time; each item carries its member's spec (kfp.local: see components/train)
    assert [(m["backbone"], m["fold"]) for m in members] == [("resnet10t", k) for k in range(3)]
    specs = [json.loads(m["spec"]) for m in members]
    assert [s["task"] for s in specs] == [f"train/resnet10t/fold{k}" for k in range(3)]
    cfg = json.loads(out["config"])
    assert cfg["data"]["folds"] == 3 and cfg["data"]["uri"] == str(data)
    pre = json.loads(out["preprocess_spec"])
    assert pre["inputs"]["data"]["key"] == out["data_hash"] and pre["settings"]["data.folds"] == 3
    assert all(s["inputs"]["preprocess"]["key"] == pre["key"] for s in specs)  # members hang off preprocess
    assert out["run_root"].startswith(str(tmp_path / "work" / "runs") + "/")
    # the plan task's page (never cached, so always this run's): every task and why it runs
    assert f"| `train/resnet10t/fold2` | **runs** | first run | `{specs[2]['key']}` |" in out["page"]

    def keys(overrides=("data.folds=3", "train.backbones=[resnet10t]")) -> dict:
        found, planned = _plan(tmp_path, config_text, list(overrides), str(data))
        specs = [json.loads(planned[f"{s}_spec"]) for s in ("preprocess", "ensemble")]
        return {s["task"]: s["key"] for s in specs + [json.loads(m["spec"]) for m in found]} | {
            "data_hash": planned["data_hash"]
        }

    first = keys()
    assert keys() == first  # unchanged data and config: the same keys
    assert keys([*["data.folds=3", "train.backbones=[resnet10t]"], "tracking.experiment=x"]) == first
    assert keys(["data.folds=4", "train.backbones=[resnet10t]"])["preprocess"] != first["preprocess"]
    (data / "train" / "a" / "y.jpg").write_bytes(b"two")  # new images: new hash, new keys everywhere
    changed = keys()
    assert changed["data_hash"] != first["data_hash"]
    assert all(changed[k] != first[k] for k in first)
    (data / "train" / "a" / "y.jpg").write_bytes(b"TWO")  # same size, other content
    assert keys()["data_hash"] != changed["data_hash"]


def test_plan_accepts_yaml_and_names_a_bad_override(tmp_path):
    data = tmp_path / "d"
    (data / "train" / "a").mkdir(parents=True)
    (data / "train" / "a" / "x.jpg").write_bytes(b"one")
    # plan-run checks each backbone (a timm model, weights it can reach): real names, trained from scratch
    text = (f"data:\n  folds: 2\ntrain:\n  backbones: [resnet10t, test_vit]\npipeline:\n"
            f"  work_root: {tmp_path / 'work'}\n")  # fmt: skip
    members, out = _plan(tmp_path, text, [], str(data))
    assert [(m["backbone"], m["fold"]) for m in members] == [
        ("resnet10t", 0), ("resnet10t", 1), ("test_vit", 0), ("test_vit", 1)
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="train.epochz"):
        _plan(tmp_path, "{}", ["train.epochz=2"], str(data))


@pytest.mark.parametrize(
    "text, problem", [("data: [unclosed", "neither JSON nor YAML"), ("- just\n- a list\n", "top level must be a mapping")]
)
def test_plan_names_a_config_text_that_is_no_config(tmp_path, text, problem):
    data = tmp_path / "d"
    (data / "train" / "a").mkdir(parents=True)
    with pytest.raises(ConfigError, match=f"config_text: {problem}"):
        _plan(tmp_path, text, [], str(data))


def _spec(planned: dict, step: str) -> str:
    return planned[f"{step}_spec"]


def test_preprocess_mirrors_outputs_and_reports(config_text, sample_dir, tmp_path):
    _, planned = _plan(tmp_path, config_text, [], str(sample_dir))
    result = _artifact(dsl.Artifact, tmp_path, "result")
    report = _artifact(dsl.Markdown, tmp_path, "report")
    full_page = _artifact(dsl.HTML, tmp_path, "page")
    summary = json.loads(preprocess.python_func(_spec(planned, "preprocess"), result, report, full_page))
    spec = json.loads(_spec(planned, "preprocess"))
    work = Path(layout.output_uri(spec["work"], "preprocess", spec["key"]))  # the key of what it read
    assert work.parent == tmp_path / "work" / "preprocess"
    for name in ("manifest.parquet", "classes.json", "report.md", "summary.json"):
        assert (work / name).exists() and (Path(result.path) / name).exists(), name
    assert json.loads((Path(result.path) / "source.json").read_text())["work_uri"] == str(work)
    page = Path(report.path).read_text(encoding="utf-8")
    # the UI says why it ran, and in which run (a task from KFP's cache shows the page of the run that ran it)
    assert page.startswith(f"_ran: first run (run {Path(planned['run_root']).name})_")
    assert "# Preprocess report" in page
    # the full page beside the summary, self-contained, with thumbnails and no path of this machine
    full = Path(full_page.path).read_text(encoding="utf-8")
    assert "data:image/jpeg;base64," in full and str(sample_dir) not in full
    assert result.metadata["data_hash"] == planned["data_hash"] and summary["status"]["corrupt"] >= 1
    assert result.metadata["why"] == "ran: first run" and result.metadata["key"] == spec["key"]
    record = json.loads((work.parent / f"{spec['key']}.json").read_text())  # what made them, for reuse
    assert record["key"] == spec["key"] and record["made_in"] == spec["made_in"]

    # the same spec again (a rerun with the cache off): its recorded outputs are reused, and it says so
    before = (work / "manifest.parquet").stat().st_mtime_ns
    again = _artifact(dsl.Artifact, tmp_path, "again")
    preprocess.python_func(_spec(planned, "preprocess"), again, _artifact(dsl.Markdown, tmp_path, "report2"),
                           _artifact(dsl.HTML, tmp_path, "page2"))
    assert (work / "manifest.parquet").stat().st_mtime_ns == before
    assert again.metadata["why"] == f"reused: same inputs (its record {spec['key']} matches)"


@pytest.fixture()
def members(tmp_path):
    # real timm names: plan-run checks each backbone against timm's registry
    uris = make_members(tmp_path, n_classes=9, n_per_class=20, backbones=("resnet10t", "test_vit"), folds=2)
    return [dsl.Artifact(name=f"m{i}", uri=u, metadata={}) for i, u in enumerate(uris)]


def test_post_training_components_fill_the_ui_artifacts(config_text, members, tmp_path):
    data = tmp_path / "data"
    (data / "train" / "a").mkdir(parents=True)
    (data / "train" / "a" / "x.jpg").write_bytes(b"one")
    _, planned = _plan(tmp_path, config_text, ["train.backbones=[resnet10t, test_vit]", "data.folds=2"], str(data))
    start_run.python_func(config_text, "p", "hash", "v1", planned["run_root"], "kfp-1")

    groups, page = _artifact(dsl.Artifact, tmp_path, "groups"), _artifact(dsl.HTML, tmp_path, "tsne")
    regroup.python_func(_spec(planned, "regroup"), members, groups, page)
    html = Path(page.path).read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") or "<html" in html
    assert "data:image/png;base64," in html  # self-contained: the plot is embedded
    assert "<p><i>ran: first run (run " in html  # why the task ran, first thing on the page
    assert json.loads((Path(groups.path) / "groups.json").read_text())["groups"]

    cal, cal_page = _artifact(dsl.Artifact, tmp_path, "cal"), _artifact(dsl.HTML, tmp_path, "reliability")
    cal_metrics = _artifact(dsl.Metrics, tmp_path, "cal_metrics")
    calibrate.python_func(_spec(planned, "calibrate"), members, cal, cal_page, cal_metrics)
    assert "data:image/png;base64," in Path(cal_page.path).read_text(encoding="utf-8")
    assert cal_metrics.metadata["mean_nll_after"] < cal_metrics.metadata["mean_nll_before"]
    # a Metrics artifact needs a file too: kfp.local treats a cached output without one as a cache miss
    assert json.loads(Path(cal_metrics.path).read_text()) == cal_metrics.metadata

    ens, report = _artifact(dsl.Artifact, tmp_path, "ens"), _artifact(dsl.Markdown, tmp_path, "weights")
    ens_metrics = _artifact(dsl.Metrics, tmp_path, "ens_metrics")
    errors = _artifact(dsl.HTML, tmp_path, "errors")
    ensemble.python_func(_spec(planned, "ensemble"), members, cal, groups, ens, report, ens_metrics, errors)
    assert (Path(ens.path) / "test_probs.npz").exists()
    assert ens_metrics.metadata["ensemble_oof_logloss"] <= ens_metrics.metadata["uniform_oof_logloss"] + 1e-9
    # the cross-fitted headline beside the in-sample figure and the prior mix's eps, named as in ensemble.json
    assert {"ensemble_oof_logloss_in_sample", "prior_mix_eps"} <= set(ens_metrics.metadata)
    assert json.loads(Path(ens_metrics.path).read_text()) == ens_metrics.metadata
    assert "weight" in Path(report.path).read_text(encoding="utf-8").lower()
    assert ens.metadata["why"] == "ran: first run"
    # the error-analysis page, in the UI too (no preprocess artifact here: ids without pictures)
    errors_page = Path(errors.path).read_text(encoding="utf-8")
    assert "Most confused pairs" in errors_page and "No pictures" in errors_page
    # each task's outcome lands in its run's directory, for `finegrain run`'s summary
    outcome = json.loads(Path(layout.outcome_uri(planned["run_root"], "ensemble")).read_text())
    assert outcome["ran"] and outcome["why"] == "ran: first run"


def test_plan_refuses_a_backbone_timm_does_not_know(tmp_path):
    data = tmp_path / "d"
    (data / "train" / "a").mkdir(parents=True)
    with pytest.raises(ConfigError, match="train.backbones\\[0\\] 'convnxt_base': not a timm model; did you mean"):
        _plan(tmp_path, "{}", ["train.backbones=[convnxt_base]"], str(data))
