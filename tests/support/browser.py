"""Open finegrain's HTML pages in headless Chromium (Debian's `chromium` package): render them to PNG, and
check that they load with a body and without a JavaScript error.

    problems = check_page(Path("runs/sample/ensemble/error_analysis.html"))   # [] when it loads cleanly
    screenshot(Path("...html"), Path("docs/screenshots/x.png"), height=1600)

Chromium runs with a fresh profile and every background service off (this machine has no network, and a page
must not need one). Console messages come from `--enable-logging=stderr`; an uncaught exception is logged there
as `"Uncaught ..."`. `--dump-dom` prints the DOM after the page's scripts ran.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

INSTALL_HINT = "install it with: apt-get update && apt-get install -y chromium fonts-nanum"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
)  # fmt: skip
TIMEOUT_S = 120
_CONSOLE = re.compile(r":(INFO|WARNING|ERROR):CONSOLE[^\]]*\] \"(.*)\", source: (\S+)")


def chromium() -> str | None:
    """The Chromium executable, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(page: Path | str, *extra: str) -> subprocess.CompletedProcess:
    exe = chromium()
    if exe is None:
        raise FileNotFoundError(f"chromium not found; {INSTALL_HINT}")
    target = page if isinstance(page, str) else Path(page).resolve().as_uri()  # a URL, or a local file
    with tempfile.TemporaryDirectory(prefix="fg-chromium-") as profile:
        return subprocess.run(
            [exe, *FLAGS, f"--user-data-dir={profile}", *extra, target],
            capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
        )  # fmt: skip


def check_page(page: Path) -> list[str]:
    """What is wrong with the page in a browser: JavaScript errors, console errors, an empty body."""
    proc = _run(page, "--enable-logging=stderr", "--v=0", "--dump-dom")
    problems = []
    for level, message, source in _CONSOLE.findall(proc.stderr):
        if level == "ERROR" or message.startswith("Uncaught"):
            problems.append(f"{page.name}: console {level.lower()}: {message} ({source})")
    body = re.search(r"<body[^>]*>(.*)</body>", proc.stdout, re.S)
    text = re.sub(
        r"<script.*?</script>|<style.*?</style>|<[^>]+>", " ", body.group(1) if body else "", flags=re.S
    )
    if not text.strip():
        problems.append(f"{page.name}: empty body (exit {proc.returncode}) {proc.stderr[-300:]}")
    return problems


def dom(page: Path) -> str:
    """The page's DOM after its scripts ran."""
    return _run(page, "--dump-dom").stdout


def screenshot(page: Path | str, png: Path, width: int = 1400, height: int = 1600, wait_ms: int = 0) -> Path:
    """The first `width` x `height` CSS pixels of the page (a file, or a URL such as the MLflow UI's), as a
    PNG; `wait_ms` of page time first, for an app that renders after its data has loaded."""
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    wait = [f"--virtual-time-budget={wait_ms}"] if wait_ms else []
    proc = _run(page, f"--screenshot={png.resolve()}", f"--window-size={width},{height}", *wait)
    if not png.exists():
        raise RuntimeError(
            f"chromium wrote no screenshot of {page} (exit {proc.returncode}): {proc.stderr[-500:]}"
        )
    return png
