"""images/engine.sh with fakes: a Docker engine is started or installed only when none answers."""

from __future__ import annotations

import shutil
import subprocess

from tests.support.paths import REPO as ROOT


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
