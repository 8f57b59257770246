"""Fixtures shared by the cluster-side tests: a fake pip configuration, the rendered kustomizations."""

from __future__ import annotations

import shutil
import sys

import pytest

from tests.support.k8s_manifests import KUSTOMIZATIONS, MANIFESTS, render


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


# Session scope: the manifest tests only read the objects (a test that edits one edits a copy), and kubectl
# kustomize takes seconds per kustomization.
@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """{kustomization: [objects]}, rendered once per session."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on PATH; it renders the kustomizations (`kubectl kustomize`)")
    return {name: render(MANIFESTS / name) for name in KUSTOMIZATIONS}
