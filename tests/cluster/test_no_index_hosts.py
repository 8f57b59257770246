"""No public package index or mirror host is named anywhere in the repository: teams behind a proxy or an
internal mirror get theirs from the machine's pip / apt configuration (images/host-index.sh).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.support.paths import REPO as ROOT

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
