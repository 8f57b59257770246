"""Compiled-YAML checks: what the cluster will run, asserted without a cluster."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from finegrain.config import load_config  # noqa: E402
from pipelines.training import compile_pipeline, member_items  # noqa: E402

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


def _root_tasks(spec):
    return spec["root"]["dag"]["tasks"]


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
    assert "preprocess" in loop["dependentTasks"]
    assert loop_name in tasks["regroup"]["dependentTasks"]
    assert "regroup" in tasks["calibrate"]["dependentTasks"]
    assert {"calibrate", "regroup"} <= set(tasks["ensemble"]["dependentTasks"])
    assert "ensemble" in tasks["submit"]["dependentTasks"]
    # the train task consumes preprocess' artifact; the fan-in passes every member downstream
    assert inner["train"]["inputs"]["artifacts"]["preprocess"]
    assert tasks["regroup"]["inputs"]["artifacts"]["members"]["taskOutputArtifact"]["producerTask"] == loop_name


def test_parallel_for_covers_backbones_times_folds(compiled):
    cfg, _, spec, _ = compiled
    _, loop = _loop(spec)
    items = json.loads(loop["parameterIterator"]["items"]["raw"])
    assert items == member_items(cfg)
    assert len(items) == len(cfg.train.backbones) * cfg.data.folds
    assert {(i["backbone"], i["fold"]) for i in items} == {
        (b.name, k) for b in cfg.train.backbones for k in range(cfg.data.folds)
    }
    assert loop["iteratorPolicy"]["parallelismLimit"] == cfg.pipeline.parallelism


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
    for name, ex in executors.items():
        refs = {e["envVar"] for s in ex.get("secretAsEnv", []) for e in s["keyToEnv"]}
        assert refs == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, name
        assert {s["secretName"] for s in ex["secretAsEnv"]} == {cfg.pipeline.s3_secret}
        assert ex["podMetadata"]["labels"]["finegrain.io/role"] == "pipeline"
    for ex in spec["deploymentSpec"]["executors"].values():
        for env in ex["container"].get("env", []):
            assert not any(w in env["name"].upper() for w in ("SECRET", "PASSWORD", "TOKEN")), env
    lowered = text.lower()
    for literal in ("minioadmin", "aws_secret_access_key:", "password:"):
        assert literal not in lowered


def test_cache_keys_include_data_hash_and_code_version(compiled):
    _, _, spec, _ = compiled
    tasks = _root_tasks(spec)
    pre = tasks["preprocess"]
    assert pre["cachingOptions"]["enableCache"] is True
    params = pre["inputs"]["parameters"]
    assert params["data_hash"] == {"componentInputParameter": "data_hash"}
    assert params["code_version"] == {"componentInputParameter": "code_version"}
    assert "data_hash" in spec["root"]["inputDefinitions"]["parameters"]
    # the parent-run task must never be served from cache
    assert not tasks["start-run"].get("cachingOptions", {}).get("enableCache")


def test_one_image_for_every_component(compiled):
    cfg, _, spec, _ = compiled
    images = {ex["container"]["image"] for ex in spec["deploymentSpec"]["executors"].values()}
    assert images == {cfg.pipeline.base_image}
    assert spec["defaultPipelineRoot"] == cfg.pipeline.pipeline_root


def test_compiles_from_the_command_line(tmp_path):
    out = tmp_path / "p.yaml"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "pipelines" / "training.py"), "--config", str(ROOT / "configs/sample.yaml"),
         "--set", "data.folds=3", "--output", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    spec = next(yaml.safe_load_all(out.read_text()))
    _, loop = _loop(spec)
    n_backbones = len(load_config(ROOT / "configs/sample.yaml").train.backbones)
    assert len(json.loads(loop["parameterIterator"]["items"]["raw"])) == n_backbones * 3
