"""Every kustomization renders and every object validates: built-in kinds with kubernetes-validate (strict:
unknown fields are errors), the Karpenter kinds against the CRD schemas vendored in manifests/crds/.
"""

from __future__ import annotations

import json

import jsonschema
import kubernetes_validate
import pytest

from finegrain.config import PipelineConfig
from tests.support.k8s_manifests import KUSTOMIZATIONS, crd_schemas, ident, one, unique_objects

# The oldest release we claim to support and the newest the installed kubernetes-validate ships.
K8S_VERSIONS = ("1.34.0", kubernetes_validate.latest_version())
CFG = PipelineConfig()
CRD_SCHEMAS = crd_schemas()


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kustomization_renders_namespaced_objects(rendered, name):
    objs = rendered[name]
    assert objs, f"manifests/{name} rendered nothing"
    cluster_scoped = {"Namespace", "PriorityClass", "StorageClass", "NodePool", "EC2NodeClass"}
    for obj in objs:
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"].get("namespace") == CFG.namespace, (
                f"{ident(name, obj)} not in {CFG.namespace}"
            )


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_objects_validate_strictly(rendered, version):
    errors = []
    for name, obj in unique_objects(rendered):
        if (obj["apiVersion"], obj["kind"]) in CRD_SCHEMAS:
            continue  # validated against its vendored CRD below
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(
                f"{ident(name, obj)}: no schema in Kubernetes {version} and no CRD in manifests/crds/"
            )
        except kubernetes_validate.ValidationError as err:
            errors.append(f"{ident(name, obj)}: {'.'.join(map(str, err.path))}: {err.message}")
    assert not errors, "\n".join(errors)


def test_strict_validation_rejects_an_unknown_field(rendered):
    deployment = json.loads(json.dumps(one(rendered["base"], "Deployment", "mlflow")))
    deployment["spec"]["template"]["spec"]["containers"][0]["resourcez"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


def test_custom_resources_validate_against_vendored_crds(rendered):
    custom = [(n, o) for n, o in unique_objects(rendered) if (o["apiVersion"], o["kind"]) in CRD_SCHEMAS]
    assert {o["kind"] for _, o in custom} == {"NodePool", "EC2NodeClass"}
    for name, obj in custom:
        schema = CRD_SCHEMAS[(obj["apiVersion"], obj["kind"])]
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, (
            ident(name, obj)
            + ":\n"
            + "\n".join(f"  {'.'.join(map(str, e.path))}: {e.message}" for e in errors)
        )


@pytest.mark.parametrize(
    "path, value",
    [
        (("spec", "disruption", "consolidationPolicy"), "Sometimes"),
        (("spec", "template", "spec", "taints", 0, "effect"), "NoWay"),
        (("spec", "template", "spec", "unknownField"), True),
    ],
)
def test_crd_validation_rejects_a_broken_nodepool(rendered, path, value):
    nodepool = json.loads(json.dumps(one(rendered["overlays/eks"], "NodePool", "finegrain-gpu")))
    node = nodepool
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    schema = CRD_SCHEMAS[(nodepool["apiVersion"], "NodePool")]
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(nodepool)), f"{path}={value!r} accepted"
