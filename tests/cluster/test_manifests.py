"""Checks on the Kubernetes manifests: every kustomization renders, every object validates, and the
cluster-side names agree with what the pipeline sets (PipelineConfig defaults).

Built-in kinds are validated with kubernetes-validate (strict: unknown fields are errors); the Karpenter
kinds against the CRD schemas vendored in manifests/crds/. Each kustomization is rendered once per module.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import shutil
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

from finegrain.config import PipelineConfig
from tests.support.k8s_manifests import (
    KUSTOMIZATIONS,
    MANIFESTS,
    ROOT,
    containers,
    crd_schemas,
    ident,
    ingress_allowed,
    one,
    pod_specs,
    render,
    unique_objects,
)

REAL_CLUSTER_OVERLAYS = ("overlays/eks", "overlays/gke")
# The oldest release we claim to support and the newest the installed kubernetes-validate ships.
K8S_VERSIONS = ("1.34.0", kubernetes_validate.latest_version())
PLACEHOLDER = re.compile(r"change-me", re.IGNORECASE)
# Values that are never placeholders: key material and tokens with well-known shapes.
CREDENTIAL_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    # user:password@ in a URL, unless both parts are Kubernetes $(VAR) references.
    "URL with inline credentials": re.compile(r"://(?!\$\([A-Z_]+\):\$\([A-Z_]+\)@)[^/\s:@]+:[^/\s@]+@"),
}
SECRETISH_ENV = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|PRIVATE", re.IGNORECASE)
CFG = PipelineConfig()
CRD_SCHEMAS = crd_schemas()


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    """{kustomization: [objects]}, rendered once per module."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on PATH; it renders the kustomizations (`kubectl kustomize`)")
    return {name: render(MANIFESTS / name) for name in KUSTOMIZATIONS}


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


def test_every_container_has_resources_and_runs_non_root(rendered):
    problems = []
    for name, obj in unique_objects(rendered):
        for owner, pod in pod_specs([obj]):
            pod_sc = pod.get("securityContext", {})
            for c in containers(pod):
                where = f"{ident(name, owner)} container {c['name']}"
                res = c.get("resources", {})
                for section in ("requests", "limits"):
                    missing = {"cpu", "memory"} - set(res.get(section, {}))
                    if missing:
                        problems.append(f"{where}: resources.{section} lacks {sorted(missing)}")
                sc = {**pod_sc, **c.get("securityContext", {})}
                if sc.get("runAsNonRoot") is not True:
                    problems.append(f"{where}: runAsNonRoot is not true")
                if not isinstance(sc.get("runAsUser"), int) or sc["runAsUser"] == 0:
                    problems.append(f"{where}: runAsUser must be a non-zero UID")
                if c.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
                    problems.append(f"{where}: allowPrivilegeEscalation is not false")
                if "ALL" not in c.get("securityContext", {}).get("capabilities", {}).get("drop", []):
                    problems.append(f"{where}: capabilities.drop lacks ALL")
                if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                    problems.append(f"{where}: seccompProfile is not RuntimeDefault")
                image = c.get("image", "")
                tag = image.rsplit("/", 1)[-1].partition(":")[2]
                if "@sha256:" not in image and (not tag or tag == "latest" or tag.startswith("latest-")):
                    problems.append(f"{where}: image {image!r} is not pinned to a version tag")
    assert not problems, "\n".join(problems)


def test_secrets_are_placeholders_and_only_in_the_local_overlay(rendered):
    for name in REAL_CLUSTER_OVERLAYS + ("base",):
        secrets = [o["metadata"]["name"] for o in rendered[name] if o["kind"] == "Secret"]
        assert not secrets, f"manifests/{name} would overwrite real credentials on apply: {secrets}"
    for obj in rendered["overlays/local"]:
        if obj["kind"] != "Secret":
            continue
        values = dict(obj.get("stringData", {}))
        values.update({k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()})
        for key, value in values.items():
            if not (PLACEHOLDER.search(value) or (key.endswith("_USER") and value.isalpha())):
                pytest.fail(
                    f"Secret/{obj['metadata']['name']} {key}: not an obvious placeholder: {value[:4]}..."
                )


def test_no_credentials_in_rendered_text_or_env(rendered):
    for name, objs in rendered.items():
        text = yaml.safe_dump_all(objs)
        for what, pattern in CREDENTIAL_PATTERNS.items():
            match = pattern.search(text)
            assert not match, f"manifests/{name}: looks like a {what}: {match.group(0)[:12]}..."
        for owner, pod in pod_specs(objs):
            for c in containers(pod):
                for env in c.get("env", []):
                    if SECRETISH_ENV.search(env["name"]) and "value" in env:
                        pytest.fail(
                            f"{ident(name, owner)}: env {env['name']} is a literal; use a secretKeyRef"
                        )


def test_secret_references_match_the_secrets_that_get_created(rendered):
    """Every secretKeyRef is provided both by scripts/create_secrets.sh and by the local placeholders."""
    script = (ROOT / "scripts" / "create_secrets.sh").read_text()
    created = {}
    for line in re.findall(r"^make_secret (.+)$", script, re.MULTILINE):
        secret, *pairs = line.split()
        created[secret] = set(pairs[0::2])
    local = {
        o["metadata"]["name"]: set(o.get("stringData", {})) | set(o.get("data", {}))
        for o in rendered["overlays/local"]
        if o["kind"] == "Secret"
    }
    assert created == local, "scripts/create_secrets.sh and components/placeholder-secrets disagree"
    refs = set()
    for _, pod in pod_specs(rendered["base"]):
        for c in containers(pod):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
    launcher = yaml.safe_load(one(rendered["base"], "ConfigMap", "kfp-launcher")["data"]["providers"])
    secret_ref = launcher["minio"]["default"]["credentials"]["secretRef"]
    refs |= {
        (secret_ref["secretName"], secret_ref["accessKeyKey"]),
        (secret_ref["secretName"], secret_ref["secretKeyKey"]),
    }
    missing = {ref for ref in refs if ref[1] not in created.get(ref[0], set())}
    assert not missing, f"referenced but never created: {sorted(missing)}"
    assert (CFG.s3_secret, "AWS_ACCESS_KEY_ID") in refs and (CFG.s3_secret, "AWS_SECRET_ACCESS_KEY") in refs


def test_karpenter_gpu_pool_matches_the_pipeline(rendered):
    objs = rendered["overlays/eks"]
    pool = one(objs, "NodePool", "finegrain-gpu")
    template = pool["spec"]["template"]
    for key, value in CFG.gpu_node_selector.items():
        assert template["metadata"]["labels"].get(key) == value, f"NodePool lacks label {key}={value}"
    taints = {(t["key"], t["effect"]) for t in template["spec"]["taints"]}
    assert (CFG.gpu_toleration_key, "NoSchedule") in taints
    assert pool["spec"]["disruption"] == {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "60s"}
    assert {"nvidia.com/gpu", "cpu"} <= set(pool["spec"]["limits"])
    reqs = {r["key"]: r for r in template["spec"]["requirements"]}
    assert set(reqs["karpenter.sh/capacity-type"]["values"]) == {"spot", "on-demand"}
    families = set(reqs["karpenter.k8s.aws/instance-family"]["values"])
    assert families and all(re.fullmatch(r"(g5|g6|g6e|p4d|p4de|p5|p5e|p5en)", f) for f in families), families
    node_class = one(objs, "EC2NodeClass", "finegrain-gpu")
    assert template["spec"]["nodeClassRef"] == {
        "group": "karpenter.k8s.aws",
        "kind": "EC2NodeClass",
        "name": "finegrain-gpu",
    }
    assert node_class["spec"]["metadataOptions"]["httpTokens"] == "required"


def test_cluster_autoscaler_node_groups_match_the_pipeline():
    """eksctl (EKS without Karpenter) and the GKE node pool: min 0, and labelled/tainted as the pipeline expects."""
    config = yaml.safe_load((MANIFESTS / "cluster-autoscaler" / "eksctl-gpu-nodegroup.yaml").read_text())
    (group,) = config["managedNodeGroups"]
    assert group["minSize"] == 0 and group["desiredCapacity"] == 0 and group["maxSize"] >= 1
    assert {(t["key"], t["effect"]) for t in group["taints"]} == {(CFG.gpu_toleration_key, "NoSchedule")}
    tags = group["tags"]
    for key, value in CFG.gpu_node_selector.items():
        assert group["labels"].get(key) == value
        # Without this tag the autoscaler cannot know, at zero nodes, that the group satisfies the selector.
        assert tags.get(f"k8s.io/cluster-autoscaler/node-template/label/{key}") == value
    taint_tag = tags.get(f"k8s.io/cluster-autoscaler/node-template/taint/{CFG.gpu_toleration_key}", "")
    assert taint_tag.endswith(":NoSchedule"), taint_tag
    assert tags.get("k8s.io/cluster-autoscaler/enabled") == "true"

    script = (MANIFESTS / "overlays" / "gke" / "gpu-node-pool.sh").read_text()
    flags = dict(re.findall(r"--([a-z-]+) (\S+)", script))
    assert flags["min-nodes"] == "0" and "--enable-autoscaling" in script
    labels = dict(item.split("=", 1) for item in flags["node-labels"].split(","))
    assert labels == CFG.gpu_node_selector
    assert re.fullmatch(re.escape(CFG.gpu_toleration_key) + r"=\w+:NoSchedule", flags["node-taints"])


def test_kfp_launcher_points_at_our_minio(rendered):
    launcher = one(rendered["base"], "ConfigMap", "kfp-launcher")
    assert launcher["metadata"]["namespace"] == CFG.namespace
    assert launcher["data"]["defaultPipelineRoot"] == CFG.pipeline_root
    scheme = CFG.pipeline_root.split("://", 1)[0]
    provider = yaml.safe_load(launcher["data"]["providers"])[scheme]["default"]
    assert provider["endpoint"] == "minio.finegrain.svc.cluster.local:9000" and provider["disableSSL"] is True
    assert provider["credentials"]["fromEnv"] is False
    assert provider["credentials"]["secretRef"] == {
        "secretName": CFG.s3_secret,
        "accessKeyKey": "AWS_ACCESS_KEY_ID",
        "secretKeyKey": "AWS_SECRET_ACCESS_KEY",
    }


def test_services_buckets_and_priority_class_follow_the_contract(rendered):
    objs = rendered["base"]
    ports = {
        o["metadata"]["name"]: {p["port"] for p in o["spec"]["ports"]} for o in objs if o["kind"] == "Service"
    }
    assert {9000, 9001} <= ports["minio"] and ports["mlflow"] == {5000} and ports["mlflow-postgres"] == {5432}
    script = one(objs, "Job", "minio-buckets")["spec"]["template"]["spec"]["containers"][0]["args"][0]
    bucket_loop = re.search(r"for bucket in ([^;]+);", script).group(1).split()
    assert set(bucket_loop) == {"finegrain-data", "finegrain-artifacts", "finegrain-pipelines", "mlflow"}
    assert CFG.pipeline_root.split("://", 1)[1].split("/", 1)[0] in bucket_loop
    mlflow_args = one(objs, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--serve-artifacts" in mlflow_args and "--artifacts-destination=s3://mlflow/" in mlflow_args
    assert any(
        a.startswith("--allowed-hosts=") and "mlflow.finegrain.svc.cluster.local:*" in a for a in mlflow_args
    )
    assert one(objs, "PriorityClass", "finegrain-training")["value"] > 0
    quota = one(objs, "ResourceQuota", "finegrain-quota")["spec"]["hard"]
    assert int(quota["requests.nvidia.com/gpu"]) >= 1


def test_network_policies_admit_only_the_intended_clients(rendered):
    policies = [o for o in rendered["base"] if o["kind"] == "NetworkPolicy"]
    pipeline = {"finegrain.io/role": "pipeline"}
    minio, mlflow = {"app.kubernetes.io/name": "minio"}, {"app.kubernetes.io/name": "mlflow"}
    postgres = {"app.kubernetes.io/name": "mlflow-postgres"}
    stranger = {"app": "something-else"}
    assert ingress_allowed(policies, pipeline, minio, 9000)
    assert ingress_allowed(policies, mlflow, minio, 9000)
    assert ingress_allowed(policies, pipeline, mlflow, 5000)
    assert ingress_allowed(policies, mlflow, postgres, 5432)
    assert not ingress_allowed(policies, stranger, minio, 9000)
    assert not ingress_allowed(policies, stranger, mlflow, 5000)
    assert not ingress_allowed(policies, mlflow, mlflow, 5000)
    assert not ingress_allowed(policies, pipeline, postgres, 5432)
    assert not ingress_allowed(policies, pipeline, minio, 9001)  # the console is not for pipeline pods
    assert not ingress_allowed(policies, pipeline, {"app": "any-other-pod"}, 8080)  # default deny


def test_deploy_kustomization_sets_registry_and_cluster_name(tmp_path, rendered):
    # scripts/ is a folder of command-line tools, not a package: load the file as a module.
    spec = importlib.util.spec_from_file_location("deploy_kustomization", ROOT / "scripts" / "deploy_kustomization.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    build_kustomization = module.build_kustomization
    out_dir = tmp_path / "eks"
    out_dir.mkdir()
    kustomization = build_kustomization("eks", "registry.test/team", out_dir, cluster_name="prod")
    (out_dir / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    objs = render(out_dir)
    image = one(objs, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith("registry.test/team/finegrain-mlflow:")
    node_class = one(objs, "EC2NodeClass", "finegrain-gpu")["spec"]
    assert node_class["role"] == "KarpenterNodeRole-prod"
    assert node_class["subnetSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": "prod"}}]
    with pytest.raises(SystemExit, match="no such|choose one of"):
        build_kustomization("nope", "registry.test", out_dir)


def test_create_secrets_script_makes_each_secret_once_without_printing_values(tmp_path):
    """scripts/create_secrets.sh against a stand-in kubectl that records what it is asked to apply."""
    log, state = tmp_path / "applied.yaml", tmp_path / "existing"
    state.write_text("minio-root\n")  # pretend this one is already on the cluster
    fake = tmp_path / "kubectl"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'case "$*" in\n'
        '  *"get namespace"*) exit 0 ;;\n'
        f'  *"get secret"*) grep -qx "${{@: -1}}" {state} ;;\n'
        '  *"create secret generic"*) for a in "$@"; do [[ $a == --from-env-file=* ]] && '
        'echo "--- $3" && cat "${a#--from-env-file=}"; done; exit 0 ;;\n'
        f'  *"apply -f -"*) cat >> {log} ;;\n'
        "esac\n"
    )
    fake.chmod(0o755)
    env_file = tmp_path / "secrets.env"
    env_file.write_text("# comment\nPOSTGRES_PASSWORD=chosen-by-me\nAWS_ACCESS_KEY_ID=\n")
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "create_secrets.sh")],
        env={"PATH": "/usr/bin:/bin", "KUBECTL": str(fake), "SECRETS_ENV": str(env_file)},
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    applied = dict(re.findall(r"^(\w+)=(.*)$", log.read_text(), re.MULTILINE))
    assert set(applied) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
    }
    assert applied["POSTGRES_PASSWORD"] == "chosen-by-me" and applied["POSTGRES_USER"] == "mlflow"
    assert re.fullmatch(r"[0-9a-f]{20}", applied["AWS_ACCESS_KEY_ID"])
    assert re.fullmatch(r"[0-9a-f]{40}", applied["AWS_SECRET_ACCESS_KEY"])
    assert "minio-root exists; kept" in proc.stdout
    assert not any(v in proc.stdout + proc.stderr for v in applied.values() if v != "mlflow")
