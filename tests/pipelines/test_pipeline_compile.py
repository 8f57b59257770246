"""Compiled-YAML checks: what the cluster will run, asserted without a cluster."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from finegrain.config import load_config  # noqa: E402
from pipelines.training import compile_pipeline  # noqa: E402
from tests.support.paths import REPO as ROOT

STEPS = ["preprocess", "train", "regroup", "calibrate", "ensemble", "submit"]
CANARY_SECRET = "canary-secret-Zq9xv3"  # set in the environment while compiling; must never reach the YAML


@pytest.fixture(scope="module", params=["configs/sample.yaml", "configs/hecto.yaml"])
def compiled(request, tmp_path_factory):
    cfg = load_config(ROOT / request.param)
    out = tmp_path_factory.mktemp("compiled") / "training.yaml"
    old = {k: os.environ.get(k) for k in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")}
    os.environ["AWS_SECRET_ACCESS_KEY"] = CANARY_SECRET
    os.environ["AWS_ACCESS_KEY_ID"] = CANARY_SECRET + "-id"
    try:
        compile_pipeline(cfg, out)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    text = out.read_text(encoding="utf-8")
    spec, platform = list(yaml.safe_load_all(text))
    return cfg, text, spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _exit_group(spec):
    groups = [(n, t) for n, t in spec["root"]["dag"]["tasks"].items() if n.startswith("exit-handler")]
    assert len(groups) == 1, "the whole body runs inside one dsl.ExitHandler"
    return groups[0]


def _root_tasks(spec):
    """The pipeline body: the tasks inside the exit handler."""
    return spec["components"][_exit_group(spec)[1]["componentRef"]["name"]]["dag"]["tasks"]


def _loop(spec):
    loops = [(n, t) for n, t in _root_tasks(spec).items() if "parameterIterator" in t]
    assert len(loops) == 1, "exactly one ParallelFor over the members"
    return loops[0]


def test_every_step_present_and_wired_in_order(compiled):
    _, _, spec, _ = compiled
    tasks = _root_tasks(spec)
    loop_name, loop = _loop(spec)
    inner = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    for step in STEPS:
        assert f"comp-{step}" in spec["components"], step
    assert "train" in inner and "train" not in tasks
    assert {"plan-run", "preprocess", "start-run"} <= set(loop["dependentTasks"])
    assert "plan-run" in tasks["preprocess"]["dependentTasks"]
    assert loop_name in tasks["regroup"]["dependentTasks"]
    assert "regroup" in tasks["calibrate"]["dependentTasks"]
    assert {"calibrate", "regroup"} <= set(tasks["ensemble"]["dependentTasks"])
    assert "ensemble" in tasks["submit"]["dependentTasks"]
    # the train task consumes preprocess' artifact; the fan-in passes every member downstream
    assert inner["train"]["inputs"]["artifacts"]["preprocess"]
    assert tasks["regroup"]["inputs"]["artifacts"]["members"]["taskOutputArtifact"]["producerTask"] == loop_name


def test_fan_out_comes_from_the_run_plan_at_run_time(compiled):
    _, _, spec, _ = compiled
    _, loop = _loop(spec)
    # not a compile-time list: the items are the plan task's output, computed from the run's own config
    assert "raw" not in loop["parameterIterator"]["items"]
    channel = loop["parameterIterator"]["items"]["inputParameter"]
    assert loop["inputs"]["parameters"][channel]["taskOutputParameter"] == {
        "outputParameterKey": "Output", "producerTask": "plan-run"
    }
    assert loop["iteratorPolicy"]["parallelismLimit"] == compiled[0].pipeline.parallelism
    # inside the loop only the loop item and artifacts: kfp.local swaps task-output parameters for the item,
    # so the member's spec (its key and settings) is a field of the item
    inner = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]["train"]["inputs"]
    assert set(inner["artifacts"]) == {"preprocess"}
    assert all("componentInputParameter" in v for v in inner["parameters"].values())
    assert set(inner["parameters"]) == {"backbone", "fold", "spec"}
    assert inner["parameters"]["spec"]["parameterExpressionSelector"] == "parseJson(string_value)[\"spec\"]"


def test_run_parameters_are_editable_and_nothing_is_precomputed(compiled):
    cfg, _, spec, _ = compiled
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == {"config_text", "overrides", "data_uri", "run_name"}
    assert params["overrides"]["parameterType"] == "LIST" and params["overrides"]["defaultValue"] == []
    assert json.loads(params["config_text"]["defaultValue"])["train"]["epochs"] == cfg.train.epochs
    plan = _root_tasks(spec)["plan-run"]
    assert plan["inputs"]["parameters"]["overrides"] == {"componentInputParameter": "pipelinechannel--overrides"}


def test_only_train_requests_exactly_one_gpu(compiled):
    _, _, spec, _ = compiled
    for name, executor in spec["deploymentSpec"]["executors"].items():
        resources = executor["container"].get("resources", {})
        accel = resources.get("accelerator")
        if name == "exec-train":
            assert accel["resourceType"] == "nvidia.com/gpu"
            assert int(accel["resourceCount"]) == 1
            assert resources["resourceCpuRequest"] and resources["resourceMemoryRequest"]
        else:
            assert accel is None, f"{name} must not request a GPU"


def test_train_pods_tolerate_select_gpu_nodes_and_get_shm(compiled):
    cfg, _, _, executors = compiled
    train = executors["exec-train"]
    assert {"key": cfg.pipeline.gpu_toleration_key, "operator": "Exists", "effect": "NoSchedule"} in train[
        "tolerations"
    ]
    assert train["nodeSelector"]["labels"] == cfg.pipeline.gpu_node_selector
    shm = [m for m in train["emptyDirMounts"] if m["mountPath"] == "/dev/shm"]
    assert shm and shm[0]["medium"] == "Memory"
    assert int(train["activeDeadlineSeconds"]) == cfg.pipeline.train_timeout_s
    for name, ex in executors.items():
        if name != "exec-train":
            assert not ex.get("tolerations") and not ex.get("nodeSelector"), f"{name} must stay off GPU nodes"


def test_train_retries_for_preemption(compiled):
    cfg, _, spec, _ = compiled
    _, loop = _loop(spec)
    inner = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert inner["train"]["retryPolicy"]["maxRetryCount"] == cfg.pipeline.train_retries


def test_credentials_only_by_secret_reference(compiled):
    cfg, text, spec, executors = compiled
    assert CANARY_SECRET not in text
    s3_env = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    for name, ex in executors.items():
        by_secret = {s["secretName"]: {e["envVar"] for e in s["keyToEnv"]} for s in ex.get("secretAsEnv", [])}
        assert by_secret[cfg.pipeline.s3_secret] == s3_env, name
        if name == "exec-submit":  # the submission token, from its own (optional) Secret
            assert by_secret == {cfg.pipeline.s3_secret: s3_env, cfg.pipeline.submit_token_secret: {cfg.submit.token_env}}
            token = next(s for s in ex["secretAsEnv"] if s["secretName"] == cfg.pipeline.submit_token_secret)
            assert token["keyToEnv"] == [{"secretKey": "FINEGRAIN_SUBMIT_TOKEN", "envVar": cfg.submit.token_env}]
            assert token["optional"] is True
        else:
            assert set(by_secret) == {cfg.pipeline.s3_secret}, name
        assert ex["podMetadata"]["labels"]["finegrain.io/role"] == "pipeline"
    for ex in spec["deploymentSpec"]["executors"].values():
        for env in ex["container"].get("env", []):
            assert not any(w in env["name"].upper() for w in ("SECRET", "PASSWORD", "TOKEN")), env
    lowered = text.lower()
    for literal in ("minioadmin", "aws_secret_access_key:", "password:"):
        assert literal not in lowered


def test_each_step_is_keyed_by_its_own_spec_from_the_plan(compiled):
    _, _, spec, _ = compiled
    tasks = _root_tasks(spec)
    # a step's only parameter is its spec (key, settings, inputs' keys): its cache key follows what it reads,
    # never the whole config, so a setting one step reads is a cache miss for that step and its dependants only
    for step in ("preprocess", "regroup", "calibrate", "ensemble", "submit", "register"):
        task = tasks[step]
        assert task["cachingOptions"]["enableCache"] is True, step
        assert task["inputs"]["parameters"] == {
            "spec": {"taskOutputParameter": {"outputParameterKey": f"{step}_spec", "producerTask": "plan-run"}}
        }, step
    # the plan must see the data (and the finished outputs) as they are now; the parent run and its end are new
    # for every pipeline run
    for name in ("plan-run", "start-run"):
        assert not tasks[name].get("cachingOptions", {}).get("enableCache"), name
    assert not spec["root"]["dag"]["tasks"]["end-run"].get("cachingOptions", {}).get("enableCache")
    assert tasks["plan-run"]["inputs"]["parameters"]["kfp_run_id"]["runtimeValue"]["constant"] == (
        "{{$.pipeline_job_uuid}}"
    )


def test_exit_handler_ends_the_parent_run_with_the_final_status(compiled):
    _, _, spec, _ = compiled
    group, _ = _exit_group(spec)
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {group, "end-run"}
    end = root["end-run"]
    assert end["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert end["inputs"]["parameters"]["status"] == {"taskFinalStatus": {"producerTask": group}}
    # the parent run is found by the KFP run id it was tagged with at start
    assert end["inputs"]["parameters"]["kfp_run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    start = _root_tasks(spec)["start-run"]["inputs"]["parameters"]["kfp_run_id"]
    assert start["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"


def test_cuda_image_only_on_train(compiled):
    cfg, _, spec, _ = compiled
    images = {n: ex["container"]["image"] for n, ex in spec["deploymentSpec"]["executors"].items()}
    assert images.pop("exec-train") == cfg.pipeline.base_image
    assert set(images.values()) == {cfg.pipeline.resolved_cpu_image()}
    if cfg.pipeline.base_image.endswith("-cuda"):
        assert cfg.pipeline.resolved_cpu_image() == cfg.pipeline.base_image[: -len("cuda")] + "cpu"
    assert spec["defaultPipelineRoot"] == cfg.pipeline.pipeline_root


def test_cpu_image_default_and_override():
    cfg = load_config(None, ["pipeline.base_image=reg.io:5000/fg:abc-cuda"])
    assert cfg.pipeline.resolved_cpu_image() == "reg.io:5000/fg:abc-cpu"
    cfg = load_config(None, ["pipeline.base_image=reg.io:5000/fg"])
    assert cfg.pipeline.resolved_cpu_image() == "reg.io:5000/fg"
    cfg = load_config(None, ["pipeline.base_image=fg:x-cuda", "pipeline.cpu_image=c:1"])
    assert cfg.pipeline.resolved_cpu_image() == "c:1"


def test_compiles_from_the_command_line(tmp_path):
    out = tmp_path / "p.yaml"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "pipelines" / "training.py"), "--config", str(ROOT / "configs/sample.yaml"),
         "--set", "data.folds=3", "--output", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    spec = next(yaml.safe_load_all(out.read_text()))
    default = spec["root"]["inputDefinitions"]["parameters"]["config_text"]["defaultValue"]
    assert json.loads(default)["data"]["folds"] == 3
