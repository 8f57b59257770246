"""Reading the Dockerfiles and running the images/ scripts, for the image tests in tests/cluster/."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.support.paths import REPO as ROOT

DOCKERFILES = {"finegrain": ROOT / "images" / "Dockerfile", "mlflow": ROOT / "images" / "mlflow.Dockerfile"}
# Settings that pick a package index or mirror: the tests give their own, never the caller's.
INDEX_SETTINGS = re.compile(r"PIP_.*|.*_TORCH_INDEX|DEBIAN_MIRROR|APT_DIR")


def env_without_index_settings(**extra: str) -> dict[str, str]:
    """This process's environment without the caller's index/mirror settings, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not INDEX_SETTINGS.fullmatch(k)}, **extra}


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
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


def run_host_index(*args: str, **env: str) -> subprocess.CompletedProcess:
    """images/host-index.sh with `args`, in this environment less the index settings, plus `env`."""
    return subprocess.run(
        [str(ROOT / "images" / "host-index.sh"), *args], env=env_without_index_settings(**env),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
