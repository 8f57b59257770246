"""The project's own lint rules (pyproject [tool.ruff.lint]) hold on every Python file we ship."""

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO as ROOT


def test_ruff_check_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    proc = subprocess.run(
        [ruff, "check", "--output-format", "concise", "src", "tests", "components", "pipelines", "bench"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
