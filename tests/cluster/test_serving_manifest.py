"""The model server in manifests/base/serving.yaml: it serves the champion the pipeline registers, from the MLflow
registry the pipeline logs to, and the NetworkPolicies let it reach MLflow and its callers reach it, nothing more.

Schema validation (strict, Kubernetes 1.34 and the newest) and the non-root/resources checks cover it with the rest
in test_manifests.py. That the command serves the right thing is tested by running the same args on 127.0.0.1
(tests/orchestration/test_local_model.py reads them from this file); no cluster runs it here.
"""

from __future__ import annotations

import importlib.util

import pytest
import yaml

from finegrain.config import TrackingConfig, load_config
from tests.support.k8s_manifests import ROOT, containers, ingress_allowed, one, render

SERVING = {"app.kubernetes.io/name": "finegrain-serving"}
MLFLOW, MINIO = {"app.kubernetes.io/name": "mlflow"}, {"app.kubernetes.io/name": "minio"}
CLIENT = {"finegrain.io/serving-client": "true"}


@pytest.fixture(scope="module")
def base(rendered) -> list[dict]:
    return rendered["base"]


def _container(objs: list[dict]) -> dict:
    (container,) = containers(one(objs, "Deployment", "finegrain-serving")["spec"]["template"]["spec"])
    return container


def test_serves_the_champion_from_the_registry_the_pipeline_logs_to(base):
    container = _container(base)
    assert container["command"] == ["mlflow"]
    args = container["args"]
    assert args[:2] == ["models", "serve"]
    assert f"--model-uri=models:/{TrackingConfig().register_model}@champion" in args
    assert "--env-manager=local" in args and "--host=0.0.0.0" in args
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"] == load_config(ROOT / "configs" / "hecto.yaml").tracking.uri
    assert not any("valueFrom" in e for e in container["env"])  # no credentials: MLflow proxies the artifacts
    assert container["image"].startswith("finegrain:") and container["image"].endswith("-cpu")
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
    assert f"--port={port}" in args
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/ping", "port": "http"}
    service = one(base, "Service", "finegrain-serving")
    assert service["spec"]["selector"] == SERVING and service["spec"]["ports"][0]["targetPort"] == "http"
    volumes = {m["mountPath"] for m in container["volumeMounts"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True and "/tmp" in volumes


def test_the_model_server_reaches_mlflow_and_nothing_else(base):
    policies = [o for o in base if o["kind"] == "NetworkPolicy"]
    assert ingress_allowed(policies, SERVING, MLFLOW, 5000)
    assert not ingress_allowed(policies, SERVING, MINIO, 9000)
    assert not ingress_allowed(policies, SERVING, {"app.kubernetes.io/name": "mlflow-postgres"}, 5432)


@pytest.mark.parametrize("namespace", [None, "apps"], ids=["same-namespace", "other-namespace"])
def test_labelled_callers_reach_the_model_server_and_no_one_else(base, namespace):
    policies = [o for o in base if o["kind"] == "NetworkPolicy"]
    assert ingress_allowed(policies, CLIENT, SERVING, 8080, source_namespace=namespace)
    assert not ingress_allowed(policies, CLIENT, SERVING, 5000, source_namespace=namespace)
    for stranger in ({"app": "something-else"}, {"finegrain.io/role": "pipeline"}, MLFLOW):
        assert not ingress_allowed(policies, stranger, SERVING, 8080, source_namespace=namespace)
    assert not ingress_allowed(policies, CLIENT, MLFLOW, 5000, source_namespace=namespace)


def test_deploy_runs_the_model_server_on_the_commits_cpu_image(tmp_path, base):
    spec = importlib.util.spec_from_file_location("deploy_kustomization", ROOT / "scripts" / "deploy_kustomization.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out_dir = tmp_path / "local"
    out_dir.mkdir()
    kustomization = module.build_kustomization("local", "registry.test/team", out_dir, tag="1a2b3c4")
    (out_dir / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    objs = render(out_dir)
    assert _container(objs)["image"] == "registry.test/team/finegrain:1a2b3c4-cpu"
    mlflow = one(objs, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert mlflow.startswith("registry.test/team/finegrain-mlflow:")  # untouched by the finegrain entry
