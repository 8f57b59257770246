"""A newcomer's first hour with the Makefile: `make help` lists every target, and the targets that need
something absent (a cluster, imagededup) say what in one line instead of failing somewhere deeper.

Each test runs make in the checkout without building anything: the failing targets stop before their
prerequisites, and `-o install` keeps make from touching a virtual environment.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.support.paths import REPO as ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def _rule_targets() -> set[str]:
    """Every target that make's database holds as a rule (Makefile and mk/cluster.mk), less the internal ones:
    files (a path), special targets (.PHONY, ...) and helpers named with a leading underscore."""
    proc = _make("-qpr", "help")  # -q: run nothing; -p: print the database; -r: no built-in rules
    files = proc.stdout.split("\n# Files\n", 1)[1].split("\n# files hash-table stats", 1)[0]
    targets, not_a_target = set(), False
    for line in files.splitlines():
        if line == "# Not a target:":
            not_a_target = True
            continue
        match = re.match(r"([^#\s][^:=\s]*):(?!=)", line)
        if match:
            name = match.group(1)
            if not not_a_target and not name.startswith((".", "_")) and "/" not in name:
                targets.add(name)
            not_a_target = False
    return targets


def test_help_lists_every_target_with_one_line():
    proc = _make("help")
    assert proc.returncode == 0, proc.stderr
    listed = [re.match(r"make (\S+)\s+(\S.*)$", line) for line in proc.stdout.splitlines()]
    assert all(listed), f"a line of `make help` is not `make <target>  <what it does>`:\n{proc.stdout}"
    names = [m.group(1) for m in listed]
    assert len(names) == len(set(names)), f"listed twice: {sorted({n for n in names if names.count(n) > 1})}"
    targets = _rule_targets()
    assert {"run", "submit-pipeline", "images", "deploy"} <= targets, (
        "the parse missed Makefile or mk/cluster.mk"
    )
    missing = targets - set(names)
    assert not missing, f"targets without a `## one line` (so not in `make help`): {sorted(missing)}"
    assert set(names) <= targets, f"`make help` lists what is not a target: {sorted(set(names) - targets)}"


@pytest.mark.parametrize("goal", ["submit-pipeline", "schedule"])
def test_cluster_targets_without_kfp_host_say_so_before_doing_anything(goal, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "KFP_HOST"}
    # Were the check to come after the prerequisites, `install` would try to build this venv (PYTHON=false fails).
    venv = tmp_path / "venv"
    proc = _make(goal, "CONFIG=configs/hecto.yaml", f"VENV={venv}", "PYTHON=false", env=env)
    assert proc.returncode != 0
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "KFP_HOST is not set" in lines[0] and "export KFP_HOST=https://" in lines[0]
    assert not venv.exists()


def test_bench_preprocess_without_imagededup_says_how_to_install_it(tmp_path):
    # imagededup may or may not be installed here: a package whose import fails the way a missing one does,
    # first on the path, stands in for its absence.
    fake = tmp_path / "site" / "imagededup"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'imagededup'\", name='imagededup')\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(fake.parent), env.get("PYTHONPATH", "")) if p)
    proc = _make("-s", "bench-preprocess", f"PY={sys.executable}", "-o", "install", env=env)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    said = [line for line in (proc.stdout + proc.stderr).splitlines() if not line.startswith("make: ***")]
    assert len(said) == 1, said
    assert said[0].startswith("bench/preprocess.py needs imagededup")
    assert "pip install --no-deps --target /tmp/bench-imagededup imagededup==" in said[0]


def test_screenshots_without_chromium_says_how_to_install_it():
    proc = _make("-s", "screenshots", "CHROMIUM=no-such-chromium", "-o", "install")
    assert proc.returncode != 0
    said = [line for line in (proc.stdout + proc.stderr).splitlines() if not line.startswith("make: ***")]
    assert len(said) == 1, said
    assert "needs Chromium" in said[0] and "apt-get install -y chromium" in said[0]
