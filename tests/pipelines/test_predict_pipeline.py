"""pipelines/predict.py compiled and submitted, without a cluster: the shard fan-out over CPU pods (GPU pods only
with predict.gpu), nothing cached, credentials by Secret only; `run` against a stand-in of the KFP API. The
pipeline itself runs through kfp.local in tests/orchestration/test_local_run.py."""

from __future__ import annotations

import json

import pytest
import yaml

from finegrain.config import load_config
from pipelines import predict as predict_mod
from pipelines.predict import compile_predict_pipeline
from tests.pipelines.test_submit_pipeline import kfp_api  # noqa: F401 - the stand-in KFP API fixture
from tests.support.paths import REPO as ROOT


def _compile(tmp_path, *overrides: str, config: str = "configs/hecto.yaml") -> tuple:
    cfg = load_config(ROOT / config, list(overrides))
    path = compile_predict_pipeline(cfg, tmp_path / "predict.yaml", images_uri="s3://finegrain-data/new")
    spec, platform = yaml.safe_load_all(path.read_text(encoding="utf-8"))
    return cfg, spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _loop(spec: dict) -> tuple[str, dict]:
    (loop,) = [(n, t) for n, t in spec["root"]["dag"]["tasks"].items() if "parameterIterator" in t]
    return loop


def test_shards_fan_out_from_the_plan_and_collect_waits_for_all(tmp_path):
    cfg, spec, _ = _compile(tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    loop_name, loop = _loop(spec)
    assert loop["parameterIterator"]["items"]["inputParameter"]  # the plan's output, not a compile-time list
    assert loop["iteratorPolicy"]["parallelismLimit"] == cfg.predict.parallelism
    inner = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert set(inner) == {"predict-shard"}
    shard_inputs = inner["predict-shard"]["inputs"]
    assert shard_inputs["artifacts"]["listing"] == {"componentInputArtifact": "pipelinechannel--plan-predict-listing"}
    assert shard_inputs["parameters"]["start"]["parameterExpressionSelector"] == 'parseJson(string_value)["start"]'
    parts = tasks["collect-predictions"]["inputs"]["artifacts"]["parts"]
    assert parts["taskOutputArtifact"]["producerTask"] == loop_name
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == {"config_text", "model_uri", "images_uri", "out_uri"}
    assert params["model_uri"]["defaultValue"] == "models:/finegrain-ensemble@champion"
    assert params["images_uri"]["defaultValue"] == "s3://finegrain-data/new"


def test_nothing_is_cached(tmp_path):
    """The same parameters must score with today's champion, not return an earlier run's predictions."""
    _, spec, _ = _compile(tmp_path)
    inner = spec["components"][_loop(spec)[1]["componentRef"]["name"]]["dag"]["tasks"]
    for name, task in {**spec["root"]["dag"]["tasks"], **inner}.items():
        assert not task.get("cachingOptions", {}).get("enableCache"), name


def test_shards_run_on_cpu_pods_unless_the_config_asks_for_gpus(tmp_path):
    cfg, spec, executors = _compile(tmp_path)
    for name, ex in spec["deploymentSpec"]["executors"].items():
        assert "accelerator" not in ex["container"].get("resources", {}), name
        assert ex["container"]["image"] == cfg.pipeline.resolved_cpu_image(), name
    shard = spec["deploymentSpec"]["executors"]["exec-predict-shard"]["container"]["resources"]
    assert shard["cpuRequest"] == float(cfg.predict.cpu) and shard["memoryRequest"] == 17.179869184
    assert not any(ex.get("tolerations") or ex.get("nodeSelector") for ex in executors.values())

    cfg, spec, executors = _compile(tmp_path, "predict.gpu=true")
    shard = spec["deploymentSpec"]["executors"]["exec-predict-shard"]["container"]
    accelerator = shard["resources"]["accelerator"]
    assert accelerator["resourceType"] == "nvidia.com/gpu" and int(accelerator["resourceCount"]) == 1
    assert shard["image"] == cfg.pipeline.base_image
    assert executors["exec-predict-shard"]["nodeSelector"]["labels"] == cfg.pipeline.gpu_node_selector
    for name in ("exec-plan-predict", "exec-collect-predictions"):
        assert "accelerator" not in spec["deploymentSpec"]["executors"][name]["container"].get("resources", {})


def test_credentials_only_by_secret_reference_and_pods_labelled_for_the_network_policies(tmp_path):
    cfg, _, executors = _compile(tmp_path)
    for name, ex in executors.items():
        (secret,) = ex["secretAsEnv"]
        assert secret["secretName"] == cfg.pipeline.s3_secret, name
        assert ex["podMetadata"]["labels"]["finegrain.io/role"] == "pipeline", name


def test_run_needs_a_cluster_and_images(monkeypatch, capsys):
    monkeypatch.delenv("KFP_HOST", raising=False)
    with pytest.raises(SystemExit, match="KFP_HOST is not set"):
        predict_mod.main(["run", "--images", "s3://b/new", "--out", "s3://b/p.csv"])
    with pytest.raises(SystemExit):
        predict_mod.main(["local", "--out", "p.csv"])
    assert "local needs --images and --out" in capsys.readouterr().err


def test_run_submits_the_pipeline_with_the_given_parameters(kfp_api, capsys, monkeypatch):  # noqa: F811
    host, api = kfp_api
    monkeypatch.setenv("IMAGE_TAG", "abc123")
    monkeypatch.setenv("REGISTRY", "registry.example.org/team")
    args = ["run", "--config", str(ROOT / "configs/hecto.yaml"), "--images", "s3://b/new", "--out", "s3://b/p.csv"]
    assert predict_mod.main(args) == 0
    runs = [json.loads(b) for m, p, b in api.requests if m == "POST" and p.startswith("/apis/v2beta1/runs")]
    (run,) = runs
    params = run["runtime_config"]["parameters"]
    assert params["images_uri"] == "s3://b/new" and params["out_uri"] == "s3://b/p.csv"
    assert params["model_uri"] == "models:/finegrain-ensemble@champion"
    assert json.loads(params["config_text"])["tracking"]["uri"].startswith("http://mlflow.finegrain")
    assert run["service_account"] == "finegrain-pipeline"
    spec = run["pipeline_spec"]["pipeline_spec"]  # beside it, the platform spec (secrets, pod labels)
    images = {ex["container"]["image"] for ex in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example.org/team/finegrain:abc123-cpu"}  # IMAGE_TAG: this commit's CPU image
    assert f"{host}/#/runs/details/run-1" in capsys.readouterr().out
