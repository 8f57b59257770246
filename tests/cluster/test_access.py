"""Who may do what in namespace finegrain, on the rendered base kustomization: what the pipeline's Role lets its
pods ask of the Kubernetes API, and which of KFP's pods the NetworkPolicies let reach MinIO and MLflow (its UI
and API server, in namespace kubeflow or, for a standalone KFP, in finegrain itself). The pipeline's own
clients are checked in test_manifest_contract.py.
"""

from __future__ import annotations

import re
import shutil

import pytest
import yaml

from finegrain.config import PipelineConfig
from tests.support.k8s_manifests import MANIFESTS, ingress_allowed, one, render

CFG = PipelineConfig()
MINIO, MLFLOW = ({"app.kubernetes.io/name": "minio"}, 9000), ({"app.kubernetes.io/name": "mlflow"}, 5000)
KFP_UI, KFP_API = {"app": "ml-pipeline-ui"}, {"app": "ml-pipeline"}


@pytest.fixture(scope="module")
def base() -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on PATH; it renders the kustomizations (`kubectl kustomize`)")
    return render(MANIFESTS / "base")


@pytest.fixture(scope="module")
def policies(base) -> list[dict]:
    return [o for o in base if o["kind"] == "NetworkPolicy"]


def test_pipeline_role_grants_only_what_kfp_and_argo_call(base):
    """KFP's driver/launcher read the launcher ConfigMap and the one Secret it names; Argo's executor writes
    task results. Nothing else: no pods, no logs, no wildcard, no unnamed Secret."""
    role = one(base, "Role", CFG.service_account)
    assert all(len(r["apiGroups"]) == len(r["resources"]) == 1 for r in role["rules"]), role["rules"]
    rules = {(r["apiGroups"][0], r["resources"][0]): r for r in role["rules"]}
    launcher = one(base, "ConfigMap", "kfp-launcher")
    secret_ref = yaml.safe_load(launcher["data"]["providers"])["minio"]["default"]["credentials"]["secretRef"]
    assert rules.keys() == {("", "configmaps"), ("", "secrets"), ("argoproj.io", "workflowtaskresults")}
    assert rules["", "configmaps"]["resourceNames"] == ["kfp-launcher"]
    assert rules["", "secrets"]["resourceNames"] == [secret_ref["secretName"]] == [CFG.s3_secret]
    assert rules["", "configmaps"]["verbs"] == rules["", "secrets"]["verbs"] == ["get"]
    assert sorted(rules["argoproj.io", "workflowtaskresults"]["verbs"]) == ["create", "patch"]
    binding = one(base, "RoleBinding", CFG.service_account)
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert CFG.service_account in {s["name"] for s in binding["subjects"]}


def test_every_role_rule_says_who_needs_it():
    """Each rule in rbac.yaml comes right after a comment naming its caller (kubectl drops comments, so read the
    file itself)."""
    text = (MANIFESTS / "base" / "rbac.yaml").read_text()
    role = text.split("kind: Role\n", 1)[1].split("\n---", 1)[0]
    rules = re.findall(r"((?:^  #.*\n)*)^  - apiGroups:", role, re.MULTILINE)
    assert len(rules) == 3 and all(comment.strip() for comment in rules), role


@pytest.mark.parametrize("client", [KFP_UI, KFP_API], ids=["ml-pipeline-ui", "ml-pipeline"])
@pytest.mark.parametrize("namespace", ["kubeflow", None], ids=["in-kubeflow", "standalone-in-finegrain"])
@pytest.mark.parametrize("service", [MINIO, MLFLOW], ids=["minio", "mlflow"])
def test_kfp_ui_and_api_server_reach_minio_and_mlflow(policies, client, namespace, service):
    target, port = service
    assert ingress_allowed(policies, client, target, port, source_namespace=namespace)


def test_kfp_ui_and_api_server_reach_nothing_else(policies):
    for client in (KFP_UI, KFP_API):
        assert not ingress_allowed(policies, client, MINIO[0], 9001, source_namespace="kubeflow")  # console
        postgres = {"app.kubernetes.io/name": "mlflow-postgres"}
        assert not ingress_allowed(policies, client, postgres, 5432, source_namespace="kubeflow")


@pytest.mark.parametrize(
    "client, namespace",
    [
        pytest.param({"app": "ml-pipeline-persistenceagent"}, "kubeflow", id="another-kfp-pod"),
        pytest.param({"app": "workflow-controller"}, "kubeflow", id="argo-controller"),
        pytest.param({}, "kubeflow", id="unlabelled-kubeflow-pod"),
        pytest.param(KFP_UI, "default", id="ui-label-in-default"),
        pytest.param(KFP_API, "kubeflow-user-example-com", id="api-label-in-a-profile"),
        pytest.param({"finegrain.io/role": "pipeline"}, "kubeflow", id="pipeline-label-in-kubeflow"),
        pytest.param({"app.kubernetes.io/name": "mlflow"}, "other", id="mlflow-label-elsewhere"),
    ],
)
@pytest.mark.parametrize("service", [MINIO, MLFLOW], ids=["minio", "mlflow"])
def test_other_pods_in_kubeflow_or_elsewhere_stay_out(policies, client, namespace, service):
    target, port = service
    assert not ingress_allowed(policies, client, target, port, source_namespace=namespace)


def test_evaluator_reads_namespace_selectors_as_the_api_does():
    """A namespaceSelector alone admits every pod there; with a podSelector, only those pods; a podSelector
    alone, only pods of the policy's own namespace."""

    def policy(*peers: dict) -> list[dict]:
        spec = {"podSelector": {}, "ingress": [{"from": list(peers), "ports": [{"port": 80}]}]}
        return [{"metadata": {"namespace": "here"}, "spec": spec}]

    ns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "there"}}}
    pod = {"podSelector": {"matchLabels": {"app": "a"}}}
    assert ingress_allowed(policy(ns), {"app": "b"}, {}, 80, source_namespace="there")
    assert not ingress_allowed(policy(ns), {"app": "a"}, {}, 80, source_namespace="here")
    assert ingress_allowed(policy({**ns, **pod}), {"app": "a"}, {}, 80, source_namespace="there")
    assert not ingress_allowed(policy({**ns, **pod}), {"app": "b"}, {}, 80, source_namespace="there")
    assert ingress_allowed(policy(pod), {"app": "a"}, {}, 80)
    assert not ingress_allowed(policy(pod), {"app": "a"}, {}, 80, source_namespace="there")
