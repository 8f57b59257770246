"""Fixtures shared by the cluster-side tests."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture()
def pip_config(tmp_path) -> dict[str, str]:
    """Environment for a real pip that reads only a fake config file (HOME and XDG dirs moved away too)."""
    config = tmp_path / "pip.conf"
    config.write_text(
        "[global]\n"
        "index-url = https://mirror.test/pypi/simple\n"
        "extra-index-url = https://extra.test/simple\n    file:///srv/wheels/simple\n"
        "trusted-host = mirror.test\n"
    )
    return {
        "PIP": f"{sys.executable} -m pip",
        "PIP_CONFIG_FILE": str(config),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "XDG_CONFIG_DIRS": str(tmp_path / "xdg-dirs"),
    }
