"""The `make images` recipe (mk/cluster.mk), read from `make -n`: tags, variants, base image, and the host's
pip configuration passed to every build.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.support.images import env_without_index_settings
from tests.support.paths import REPO as ROOT


def _builds(make_n_output: str) -> list[str]:
    """The `docker build` commands of `make -n` output, one line each, whitespace collapsed."""
    return [
        " ".join(cmd.split())
        for cmd in make_n_output.replace("\\\n", " ").splitlines()
        if "docker build" in cmd
    ]


def test_make_images_builds_and_tags_both_variants():
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    proc = subprocess.run(
        ["make", "-n", "-f", "mk/cluster.mk", "images", "REGISTRY=registry.test/team", "TAG=abc1234"],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env_without_index_settings(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    builds = _builds(proc.stdout)
    cuda, cpu, mlflow = builds
    assert "-t registry.test/team/finegrain:abc1234-cuda -t registry.test/team/finegrain:latest-cuda" in cuda
    assert "-t registry.test/team/finegrain:abc1234-cpu -t registry.test/team/finegrain:latest-cpu" in cpu
    assert "VARIANT=cpu" in cpu and "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in cuda
    # No torch index unless one is given: torch then comes from the package index like everything else.
    assert all('--build-arg TORCH_INDEX_URL=""' in b for b in (cuda, cpu))
    assert all("--build-arg GIT_SHA=" in b for b in builds) and "images/mlflow.Dockerfile" in mlflow
    # Every build first makes sure of its base (pulled, or bootstrapped without a registry) and uses the host network.
    assert all('--build-arg BASE_IMAGE="$base"' in b and "images/base.sh python:" in b for b in builds)
    assert all("--network host" in b for b in builds)
    proc = subprocess.run(
        ["make", "-n", "-f", "mk/cluster.mk", "images", "CPU_TORCH_INDEX=https://cpu-wheels.test/whl"],
        check=False, capture_output=True, text=True, cwd=ROOT, env=env_without_index_settings(), timeout=60,
    )  # fmt: skip
    cuda, cpu, _ = _builds(proc.stdout)
    assert '--build-arg TORCH_INDEX_URL="https://cpu-wheels.test/whl"' in cpu and "cpu-wheels" not in cuda
    # Without REGISTRY the images get local names; pushing still needs one.
    proc = subprocess.run(
        ["make", "-n", "-f", "mk/cluster.mk", "images-cpu", "REGISTRY=", "TAG=abc1234"],
        check=False, capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0 and "-t finegrain:abc1234-cpu -t finegrain:latest-cpu" in proc.stdout
    proc = subprocess.run(
        ["make", "-f", "mk/cluster.mk", "push", "REGISTRY=", "DOCKER=false"],
        check=False, capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0 and "set REGISTRY" in proc.stderr


def test_make_images_passes_the_host_pip_configuration_to_every_build(pip_config):
    if shutil.which("make") is None:
        pytest.skip("make not installed")

    notes: list[str] = []

    def builds(*args: str, **env: str) -> list[str]:
        proc = subprocess.run(["make", "-n", "-f", "mk/cluster.mk", "images", *args], cwd=ROOT,
                              env=env_without_index_settings(**env), capture_output=True, text=True,
                              timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        found = _builds(proc.stdout)
        assert len(found) == 3, proc.stdout
        notes[:] = [line for line in proc.stdout.splitlines() if "not passed to the image builds" in line]
        return found

    for build in builds(**pip_config):
        assert '--build-arg PIP_INDEX_URL="https://mirror.test/pypi/simple"' in build
        assert '--build-arg PIP_EXTRA_INDEX_URL="https://extra.test/simple"' in build
        assert '--build-arg PIP_TRUSTED_HOST="mirror.test"' in build
    # the host path among the extra indexes is named once, however many images are built
    assert len(notes) == 1 and "extra-index-url file:///srv/wheels/simple" in notes[0], notes
    for build in builds(**{**pip_config, "PIP_CONFIG_FILE": os.devnull}):
        assert all(f'--build-arg {name}=""' in build for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
                                                                   "PIP_TRUSTED_HOST"))  # fmt: skip
    assert notes == []
    # given to make, a setting beats the host's; an empty one too (pip's default whatever the host says)
    for build in builds("PIP_INDEX_URL=https://other.test/simple", **pip_config):
        assert '--build-arg PIP_INDEX_URL="https://other.test/simple"' in build
    for build in builds("PIP_INDEX_URL=", **pip_config):
        assert '--build-arg PIP_INDEX_URL=""' in build
    # an empty PIP_* in the environment is unset, as for pip itself
    for build in builds(**pip_config, PIP_INDEX_URL=""):
        assert '--build-arg PIP_INDEX_URL="https://mirror.test/pypi/simple"' in build
