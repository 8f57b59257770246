"""Write the kustomization `make deploy` applies: an overlay plus this deployment's registry and cluster name.

    python scripts/deploy_kustomization.py --overlay eks --registry 123.dkr.ecr.us-west-2.amazonaws.com \
        --cluster-name prod --tag 1a2b3c4 --out build/deploy

Kept out of git (build/ is ignored) so that the committed overlays stay registry- and account-neutral.
Prints the directory to pass to `kubectl apply -k`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OVERLAYS = ROOT / "manifests" / "overlays"
MLFLOW_IMAGE = "finegrain-mlflow"
SERVING_IMAGE = "finegrain"  # the model server runs the project's CPU image (manifests/base/serving.yaml)


def _ec2nodeclass_patch(cluster_name: str) -> dict:
    """JSON patch pointing the Karpenter EC2NodeClass at this cluster's node role, subnets and security groups."""
    ops = [{"op": "replace", "path": "/spec/role", "value": f"KarpenterNodeRole-{cluster_name}"}]
    for field in ("subnetSelectorTerms", "securityGroupSelectorTerms"):
        ops.append(
            {
                "op": "replace",
                "path": f"/spec/{field}",
                "value": [{"tags": {"karpenter.sh/discovery": cluster_name}}],
            }
        )
    return {"target": {"kind": "EC2NodeClass", "name": "finegrain-gpu"}, "patch": yaml.safe_dump(ops)}


def build_kustomization(
    overlay: str, registry: str, out_dir: Path, cluster_name: str | None = None, tag: str | None = None
) -> dict:
    """The kustomization dict for `overlay`, with the MLflow image under `registry` and the model server on the
    CPU image `<registry>/finegrain:<tag>-cpu` (the tag `make push` pushed)."""
    overlay_dir = OVERLAYS / overlay
    if not (overlay_dir / "kustomization.yaml").is_file():
        choices = sorted(p.name for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").is_file())
        raise SystemExit(f"overlay {overlay!r}: no {overlay_dir}/kustomization.yaml; choose one of {choices}")
    if not registry:
        raise SystemExit("REGISTRY is empty: set it to the registry `make push` pushed to")
    kustomization: dict = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # kustomize resolves resources relative to the kustomization file, so the overlay path must be too.
        "resources": [os.path.relpath(overlay_dir, out_dir.resolve())],
        "images": [{"name": MLFLOW_IMAGE, "newName": f"{registry.rstrip('/')}/{MLFLOW_IMAGE}"}],
    }
    if tag:
        kustomization["images"].append(
            {"name": SERVING_IMAGE, "newName": f"{registry.rstrip('/')}/{SERVING_IMAGE}", "newTag": f"{tag}-cpu"}
        )
    if cluster_name:
        if overlay != "eks":
            raise SystemExit(f"CLUSTER_NAME is only used by the eks overlay, not {overlay!r}")
        kustomization["patches"] = [_ec2nodeclass_patch(cluster_name)]
    return kustomization


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overlay", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--cluster-name", default=None)
    parser.add_argument("--tag", default=None, help="image tag of the model server: <registry>/finegrain:<tag>-cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "deploy")
    args = parser.parse_args()
    out_dir = args.out / args.overlay
    out_dir.mkdir(parents=True, exist_ok=True)
    kustomization = build_kustomization(
        args.overlay, args.registry, out_dir, args.cluster_name or None, args.tag or None
    )
    (out_dir / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    print(out_dir)


if __name__ == "__main__":
    main()
