"""The deployment scripts: scripts/deploy_kustomization.py (registry and cluster name into a rendered
overlay) and scripts/create_secrets.sh (each Secret made once, no value printed).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess

import pytest
import yaml

from tests.support.k8s_manifests import ROOT, one, render


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
