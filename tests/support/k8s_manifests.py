"""Rendering and inspecting the kustomize manifests, for the manifest tests in tests/cluster/.

`render(name)` runs `kubectl kustomize manifests/<name>`; `crd_schemas()` turns the CRDs vendored in
manifests/crds/ into JSON Schemas; `ingress_allowed` evaluates our NetworkPolicies for a pair of pods.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import yaml

from tests.support.paths import REPO as ROOT

MANIFESTS = ROOT / "manifests"
KUSTOMIZATIONS = ("base", "overlays/local", "overlays/eks", "overlays/gke")
POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}


def render(path: Path) -> list[dict]:
    """The objects `kubectl kustomize` renders from the kustomization directory `path`."""
    proc = subprocess.run(
        ["kubectl", "kustomize", str(path)], check=False, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"{path}: kubectl kustomize failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def unique_objects(rendered: dict[str, list[dict]]) -> list[tuple[str, dict]]:
    """(kustomization, object) for each distinct object: base objects recur in every overlay."""
    seen, out = set(), []
    for name, objs in rendered.items():
        for obj in objs:
            key = json.dumps(obj, sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append((name, obj))
    return out


def ident(name: str, obj: dict) -> str:
    return f"manifests/{name}: {obj['kind']}/{obj['metadata']['name']}"


def strict_schema(schema: dict) -> dict:
    """A CRD structural schema as JSON Schema that rejects unknown fields (the API server would prune them)."""
    if isinstance(schema, dict):
        schema = {k: strict_schema(v) for k, v in schema.items()}
        if schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict_schema(v) for v in schema]
    return schema


def crd_schemas() -> dict[tuple[str, str], dict]:
    """{(apiVersion, kind): JSON Schema} from every vendored CRD, for each served version."""
    schemas = {}
    for path in sorted((MANIFESTS / "crds").glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            spec = crd["spec"]
            for version in spec["versions"]:
                api_version = f"{spec['group']}/{version['name']}"
                schemas[(api_version, spec["names"]["kind"])] = strict_schema(
                    version["schema"]["openAPIV3Schema"]
                )
    return schemas


def pod_specs(objs: list[dict]) -> Iterator[tuple[dict, dict]]:
    for obj in objs:
        if obj["kind"] in POD_OWNERS:
            yield obj, obj["spec"]["template"]["spec"]
        elif obj["kind"] == "CronJob":
            yield obj, obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif obj["kind"] == "Pod":
            yield obj, obj["spec"]


def containers(pod_spec: dict) -> Iterator[dict]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec.get("containers", [])


def one(objs: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def ingress_allowed(
    policies: list[dict],
    source: dict[str, str],
    target: dict[str, str],
    port: int,
    source_namespace: str | None = None,
) -> bool:
    """Whether a pod labelled `source` in `source_namespace` (default: the policies' own) may open `port` on a pod
    labelled `target` in the policies' namespace.

    Peers follow the NetworkPolicy API: a podSelector alone means pods of the policy's namespace, a
    namespaceSelector alone every pod of the matching namespaces, both together the matching pods of the
    matching namespaces. A namespace's labels are the one Kubernetes sets on all: kubernetes.io/metadata.name.
    """

    def matches(selector: dict, labels: dict) -> bool:
        assert set(selector) <= {"matchLabels"}, f"evaluator handles matchLabels only, got {selector}"
        return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())

    def admits(peer: dict, policy_namespace: str) -> bool:
        assert set(peer) <= {"podSelector", "namespaceSelector"} and peer, f"evaluator cannot judge {peer}"
        namespace = source_namespace or policy_namespace
        if "namespaceSelector" in peer:
            in_namespace = matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
        else:
            in_namespace = namespace == policy_namespace
        return in_namespace and matches(peer.get("podSelector", {}), source)

    applying = [p for p in policies if matches(p["spec"]["podSelector"], target)]
    assert applying, f"no NetworkPolicy selects {target}: ingress would be open"
    for policy in applying:
        policy_namespace = policy["metadata"]["namespace"]
        for rule in policy["spec"].get("ingress", []):
            if any(admits(peer, policy_namespace) for peer in rule["from"]) and any(
                p["port"] == port for p in rule.get("ports", [])
            ):
                return True
    return False
