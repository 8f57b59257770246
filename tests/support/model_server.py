"""`mlflow models serve` on 127.0.0.1 for the serving tests, with the command the cluster's Deployment runs.

    with ModelServer(tmp / "serve", tracking_uri) as server:     # started; the model is loaded
        requests.post(f"{server.url}/invocations", json={"dataframe_split": ...})

The command and arguments come from manifests/base/serving.yaml (only --host and --port are replaced: the test
binds 127.0.0.1 on a free port), so the test exercises what the manifest runs. `--env-manager local` needs the
venv's `uvicorn` on PATH: the venv of this interpreter is put first. The server runs in its own process group
and is killed with it on stop(), also when the test fails.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from tests.support.paths import REPO
from tests.support.servers import _executable, _kill_group, _log_tail, _Server, free_port

SERVING_MANIFEST = REPO / "manifests" / "base" / "serving.yaml"


def manifest_command() -> list[str]:
    """The model server container's command + args, as manifests/base/serving.yaml gives them."""
    deployment = next(d for d in yaml.safe_load_all(SERVING_MANIFEST.read_text()) if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return [*container["command"], *container["args"]]


class ModelServer(_Server):
    """The manifest's `mlflow models serve` against `tracking_uri`'s registry; started by the constructor."""

    def __init__(self, workdir: str | Path, tracking_uri: str, start_timeout: float = 600.0) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "serve.log"
        self.tracking_uri = tracking_uri
        self.port = free_port()
        self.start_timeout = start_timeout
        self.proc = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        program, *args = manifest_command()
        args = [a for a in args if not a.startswith(("--host=", "--port="))]
        return [_executable(program), *args, "--host=127.0.0.1", f"--port={self.port}"]

    def start(self) -> None:
        venv_bin = str(Path(sys.executable).parent)
        env = dict(os.environ, MLFLOW_TRACKING_URI=self.tracking_uri, PATH=f"{venv_bin}:{os.environ.get('PATH', '')}")
        self._launch(env)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited with {self.proc.returncode}:\n{_log_tail(self.log_path)}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"model server on {self.url} not up after {self.start_timeout}s:\n{_log_tail(self.log_path)}")

    def stop(self) -> None:
        _kill_group(self.proc)
