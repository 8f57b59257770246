"""The rendered manifests run safely and hold no credentials: resources and non-root everywhere, pinned
images, placeholder-only Secrets in the local overlay alone, no literal secret in text or env, and every
secretKeyRef provided by the secrets that get created.
"""

from __future__ import annotations

import base64
import re

import pytest
import yaml

from finegrain.config import PipelineConfig
from tests.support.k8s_manifests import ROOT, containers, ident, one, pod_specs, unique_objects

REAL_CLUSTER_OVERLAYS = ("overlays/eks", "overlays/gke")
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
