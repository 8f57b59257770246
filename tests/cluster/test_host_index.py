"""images/host-index.sh and images/base.sh with fakes: the package index and the Debian mirror come from the
host's pip / apt configuration, and the base image is used, pulled or bootstrapped from that mirror.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.images import env_without_index_settings, run_host_index
from tests.support.paths import REPO as ROOT


def test_host_index_reports_the_pip_configuration(pip_config, tmp_path):
    keys = ("index-url", "extra-index-url", "trusted-host")
    got = {key: run_host_index("pip", key, **pip_config) for key in keys}
    assert all(proc.returncode == 0 for proc in got.values()), {k: p.stderr for k, p in got.items()}
    assert got["index-url"].stdout == "https://mirror.test/pypi/simple\n"
    assert got["trusted-host"].stdout == "mirror.test\n"
    # a path on this host is no index for the build: left out (`pip left-out` says so)
    assert got["extra-index-url"].stdout == "https://extra.test/simple\n"
    # the environment wins over the config files, as for pip itself; [install] over [global]
    proc = run_host_index("pip", "index-url", **pip_config, PIP_INDEX_URL="https://env.test/simple")
    assert proc.stdout == "https://env.test/simple\n"
    with open(pip_config["PIP_CONFIG_FILE"], "a") as config:
        config.write("[install]\nindex-url = https://install.test/simple\n")
    assert run_host_index("pip", "index-url", **pip_config).stdout == "https://install.test/simple\n"
    # credentials in a URL are passed on (the build needs them) but flagged, and not printed in the note
    secret = "https://me:s3cret@private.test/simple"
    proc = run_host_index("pip", "index-url", **pip_config, PIP_INDEX_URL=secret)
    assert proc.stdout == secret + "\n" and "credentials" in proc.stderr
    assert "s3cret" not in proc.stderr


def test_host_index_names_the_pip_settings_the_builds_do_not_get(pip_config):
    """One line: the host's index paths, and the settings that pick packages but are not build arguments."""
    with open(pip_config["PIP_CONFIG_FILE"], "a") as config:  # still [global]
        config.write(
            "find-links = /srv/wheels\nconstraint = /srv/constraints.txt\nproxy = http://me:s3cret@proxy.test:3128\n"
        )
    proc = run_host_index("pip", "left-out", **pip_config)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 1, proc.stdout + proc.stderr
    assert (
        "extra-index-url file:///srv/wheels/simple; find-links /srv/wheels; constraint /srv/constraints.txt; "
        "proxy http://***@proxy.test:3128 (a build cannot see paths on this host" in proc.stdout
    )
    # what the builds do get is not named; nor is a password
    assert (
        "extra.test" not in proc.stdout and "mirror.test" not in proc.stdout and "s3cret" not in proc.stdout
    )
    # the environment wins here too; no-index only when it is on
    proc = run_host_index(
        "pip", "left-out", **pip_config, PIP_FIND_LINKS="https://links.test/", PIP_NO_INDEX="1"
    )
    assert "find-links https://links.test/; constraint /srv/constraints.txt; no-index 1; proxy" in proc.stdout
    assert "no-index" not in run_host_index("pip", "left-out", **pip_config, PIP_NO_INDEX="false").stdout


def test_host_index_reports_nothing_when_pip_is_not_configured(pip_config):
    """No configuration (or no pip at all): empty values, so pip's own default applies inside the build."""
    for env in ({**pip_config, "PIP_CONFIG_FILE": os.devnull}, {"PIP": "/nonexistent/pip"}):
        for key in ("index-url", "extra-index-url", "trusted-host"):
            proc = run_host_index("pip", key, **env)
            assert (proc.returncode, proc.stdout) == (0, "\n"), (env, key, proc.stderr)
        proc = run_host_index("pip", "left-out", **env)
        assert (proc.returncode, proc.stdout) == (0, ""), (env, proc.stderr)
    assert run_host_index("pip", "no-such-key").returncode == 2


def _apt_dir(tmp_path: Path, files: dict[str, str]) -> str:
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (apt / name).write_text(text)
    return str(apt)


ONE_LINE_SOURCES = """\
# the host's mirror, with the entries debootstrap cannot use around it
deb-src http://src.test/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/a.gpg] http://secure.test/debian-security bookworm-security main
deb [ arch=amd64 ] http://mirror.test/debian bookworm main contrib  # trailing comment
deb http://mirror.test/debian bookworm-updates main
"""
DEB822_SOURCES = """\
Types: deb-src
URIs: http://src.test/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://disabled.test/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb deb-src
# a comment inside the stanza
URIs: http://mirror.test/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 URIs: http://not-a-field.test/debian
 -----END PGP PUBLIC KEY BLOCK-----

Types: deb
URIs: http://secure.test/debian-security
Suites: bookworm-security
Components: main
"""


@pytest.mark.parametrize(
    "files",
    [
        {"sources.list": ONE_LINE_SOURCES},
        # a vendor's repository sorts first; deb822 only, as on Debian 12+
        {
            "sources.list.d/aaa-vendor.list": "deb https://vendor.test/apt nodistro main\n",
            "sources.list.d/debian.sources": DEB822_SOURCES,
        },
        {
            "sources.list.d/debian.sources": DEB822_SOURCES.replace("Types: deb deb-src", "Types: deb"),
            "sources.list.d/vendor.sources": "Types: deb\nURIs: https://vendor.test/apt\nSuites: nodistro\n",
            "sources.list.d/old.list.disabled": "deb http://old.test/debian bookworm main\n",
        },
    ],
    ids=["one-line", "deb822", "deb822-and-others"],
)
def test_host_index_finds_the_debian_mirror_in_the_apt_sources(tmp_path, files):
    proc = run_host_index("debian-mirror", APT_DIR=_apt_dir(tmp_path, files))
    assert (proc.returncode, proc.stdout) == (0, "http://mirror.test/debian\n"), proc.stderr


def test_host_index_debian_mirror_other_suites_and_no_mirror(tmp_path):
    # DEBIAN_MIRROR wins over the sources
    apt = _apt_dir(tmp_path, {"sources.list": ONE_LINE_SOURCES})
    assert run_host_index("debian-mirror", APT_DIR=apt, DEBIAN_MIRROR="http://set.test/debian").stdout == (
        "http://set.test/debian\n"
    )
    # a Debian mirror for another suite serves bookworm too (said so); an Ubuntu one does not
    apt = _apt_dir(tmp_path / "trixie", {"sources.list": "deb http://mirror.test/debian trixie main\n"})
    proc = run_host_index("debian-mirror", APT_DIR=apt)
    assert proc.stdout == "http://mirror.test/debian\n" and "no apt source for bookworm" in proc.stderr
    for files in ({}, {"sources.list": "deb http://ubuntu-mirror.test/ubuntu jammy main\n"},
                  {"sources.list": "deb-src http://src.test/debian bookworm main\n"}):  # fmt: skip
        proc = run_host_index("debian-mirror", APT_DIR=_apt_dir(tmp_path / str(len(files)), files))
        assert proc.returncode == 1 and proc.stdout == "" and "set DEBIAN_MIRROR" in proc.stderr, proc.stderr


def test_base_script_prefers_an_existing_image_and_fails_clearly_without_one(tmp_path):
    """images/base.sh with a fake docker: present -> used; pullable -> used; neither and no debootstrap -> error."""
    fake = tmp_path / "docker"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "image inspect" ]; then [ -n "$HAVE" ] && [ "$3" = "$HAVE" ] && exit 0; exit 1; fi\n'
        'if [ "$1" = pull ]; then [ -n "$PULLABLE" ] && [ "$2" = "$PULLABLE" ] && exit 0; exit 1; fi\n'
        "exit 1\n"
    )
    fake.chmod(0o755)
    script = str(ROOT / "images" / "base.sh")
    # PATH without debootstrap: the last case must stop before bootstrapping anything.
    path = f"{tmp_path}:/usr/bin:/bin"

    def run(have: str = "", pullable: str = "") -> subprocess.CompletedProcess:
        env = {
            **os.environ,
            "DOCKER": str(fake),
            "PULL_TIMEOUT": "5",
            "HAVE": have,
            "PULLABLE": pullable,
            "PATH": path,
        }
        return subprocess.run([script, "py:1"], env=env, capture_output=True, text=True, timeout=60)

    if shutil.which("debootstrap", path=path):
        pytest.skip("debootstrap is in /usr/bin here; the no-base case would bootstrap")
    assert run(have="py:1").stdout.strip() == "py:1"
    assert run(pullable="py:1").stdout.strip() == "py:1"
    assert run(have="finegrain-base:bookworm-py311").stdout.strip() == "finegrain-base:bookworm-py311"
    proc = run()
    assert proc.returncode != 0 and proc.stdout.strip() == "" and "debootstrap" in proc.stderr


def test_base_script_bootstraps_from_the_host_mirror(tmp_path):
    """images/base.sh as root with no image to pull: debootstrap gets the host's apt mirror; with none and no
    DEBIAN_MIRROR it stops before debootstrap, naming DEBIAN_MIRROR."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "debootstrap-calls"
    fakes = {"docker": "exit 1", "id": "echo 0", "debootstrap": f'echo "$*" >> {calls}; exit 1'}
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)

    def run(apt: str, **env: str) -> subprocess.CompletedProcess:
        env = env_without_index_settings(PATH=f"{bin_dir}:/usr/bin:/bin", SKIP_PULL="1", APT_DIR=apt, **env)
        return subprocess.run(
            [str(ROOT / "images" / "base.sh"), "py:1"], capture_output=True, text=True, timeout=60, env=env
        )

    proc = run(_apt_dir(tmp_path, {"sources.list": ONE_LINE_SOURCES}))
    assert proc.returncode != 0 and "from http://mirror.test/debian (bookworm)" in proc.stderr, proc.stderr
    (call,) = calls.read_text().splitlines()
    assert call.startswith("--variant=minbase")
    assert call.split()[-3::2] == ["bookworm", "http://mirror.test/debian"]
    calls.unlink()
    proc = run(_apt_dir(tmp_path / "none", {}))
    assert proc.returncode == 1 and "DEBIAN_MIRROR" in proc.stderr and not calls.exists(), proc.stderr
    run(_apt_dir(tmp_path / "none", {}), DEBIAN_MIRROR="http://set.test/debian")
    assert calls.read_text().split()[-1] == "http://set.test/debian"
