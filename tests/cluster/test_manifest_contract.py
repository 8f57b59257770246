"""The cluster-side names agree with what the pipeline sets (PipelineConfig defaults): GPU node pools (Karpenter,
eksctl, GKE) labelled and tainted as the pipeline expects, the KFP launcher pointed at our MinIO, services,
buckets and priority class, and NetworkPolicies that admit only the pipeline's intended clients.
"""

from __future__ import annotations

import re

import yaml

from finegrain.config import PipelineConfig
from tests.support.k8s_manifests import MANIFESTS, ingress_allowed, one

CFG = PipelineConfig()


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
