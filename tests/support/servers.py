"""Real servers on 127.0.0.1 for the tests: an S3 server (SeaweedFS `weed mini`) and an MLflow tracking server.

Both run as child processes in their own process group, on free ports chosen at start (every port `weed mini`
opens is passed explicitly, so parallel test runs on one machine never collide), and are killed hard
(SIGKILL to the group) on `stop()` -- the way a pod dies -- so the tests exercise the clients' retries.

    s3 = S3Server(tmp / "s3")          # started; s3.endpoint == "127.0.0.1:PORT"
    s3.restart()                       # same dir + ports: buckets and objects survive
    ml = MlflowServer(tmp / "ml", artifacts_destination="s3://bucket/mlflow", env=s3.env())
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# Every listening port of `weed mini` 4.48 (`weed mini -h`): an unset one would fall back to a fixed default
# (8333, 9333, ...) and collide with another test run.
_WEED_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "webdav.port",
    "admin.port",
    "admin.port.grpc",
    "debug.port",
)
# Not passed on purpose: metricsPort / s3.metricsPort / s3.port.https / *.port.public default to 0 or "same as
# the main port", i.e. disabled -- giving them a value would open extra listeners.


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _executable(name: str) -> str:
    # The venv's bin dir is not on PATH when pytest is run as `.venv/bin/pytest` without activating.
    beside = Path(sys.executable).parent / name
    found = shutil.which(name) or (str(beside) if beside.exists() else None)
    if not found:
        raise RuntimeError(f"{name}: executable not found on PATH or next to {sys.executable}")
    return found


def _kill_group(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "<no log>"


class _Server:
    """A server process the tests start and kill: `start()`/`stop()` in subclasses, the rest shared."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        self.stop()
        self.start()

    def _launch(self, env: dict) -> None:
        """Start `self.command()` in `self.workdir`, output appended to `self.log_path`."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.workdir,
                start_new_session=True,  # own process group, so stop() can kill every child at once
            )

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class S3Server(_Server):
    """SeaweedFS `weed mini` serving S3 on 127.0.0.1; started by the constructor."""

    access_key = "finegrain-test"
    secret_key = "finegrain-test-secret"

    def __init__(self, workdir: str | Path, start_timeout: float = 60.0) -> None:
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "weed.log"
        self.ports = {flag: free_port() for flag in _WEED_PORT_FLAGS}
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None
        self.start()

    @property
    def port(self) -> int:
        return self.ports["s3.port"]

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def env(self) -> dict[str, str]:
        """Environment for a client of this server (finegrain.storage, boto3/MLflow)."""
        return {
            "FINEGRAIN_S3_ENDPOINT": self.endpoint,
            "MLFLOW_S3_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def command(self) -> list[str]:
        return [
            _executable("weed"),
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",  # no phoning home from tests
            "-admin.ui=false",
            "-webdav=false",
            # Small volumes: the default 1 GiB preallocation per collection is wasteful for tests.
            "-master.volumeSizeLimitMB=64",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        t0 = time.monotonic()
        env = dict(os.environ, AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key)
        self._launch(env)
        self._wait_ready()
        self.startup_s = time.monotonic() - t0

    def _wait_ready(self) -> None:
        from minio import Minio
        from urllib3 import PoolManager, Retry, Timeout

        client = Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            http_client=PoolManager(timeout=Timeout(connect=1.0, read=5.0), retries=Retry(total=0)),
        )
        deadline = time.monotonic() + self.start_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"weed mini exited with {self.proc.returncode}:\n{_log_tail(self.log_path)}"
                )
            try:
                # Listing is not enough: the filer may answer before volumes are assigned, so write a probe.
                if not client.bucket_exists("readiness-probe"):
                    client.make_bucket("readiness-probe")
                client.put_object("readiness-probe", "probe", io.BytesIO(b"ok"), 2)
                return
            except Exception as exc:  # noqa: BLE001 - not up yet
                last = exc
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"S3 server on {self.endpoint} not ready after {self.start_timeout}s ({last}):\n{_log_tail(self.log_path)}"
        )

    def stop(self) -> None:
        _kill_group(self.proc)
        # A SIGKILLed weed leaves its unix sockets (/tmp/seaweedfs-<component>-<port>.sock, not configurable
        # for the gRPC ones) behind; the ports are ours, so are the sockets.
        for port in self.ports.values():
            for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)


class MlflowServer(_Server):
    """`mlflow server` with a SQLite backend in `workdir`, optionally proxying artifacts to S3."""

    def __init__(
        self,
        workdir: str | Path,
        artifacts_destination: str | None = None,
        env: dict[str, str] | None = None,
        start_timeout: float = 120.0,
        db_template: str | Path | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if db_template and not (self.workdir / "mlflow.db").exists():
            # An already-migrated empty database: the server skips ~40 schema migrations at start.
            shutil.copyfile(db_template, self.workdir / "mlflow.db")
        self.log_path = self.workdir / "mlflow.log"
        self.artifacts_destination = artifacts_destination or (self.workdir / "artifacts").as_uri()
        self.extra_env = dict(env or {})
        self.port = free_port()
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None
        self.start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            _executable("mlflow"),
            "server",
            "--host=127.0.0.1",
            f"--port={self.port}",
            f"--backend-store-uri=sqlite:///{self.workdir / 'mlflow.db'}",
            f"--artifacts-destination={self.artifacts_destination}",
            "--serve-artifacts",
            # One worker: the test machine has 2 shared cores, and one process is easier to kill cleanly.
            "--workers=1",
            f"--allowed-hosts=127.0.0.1:{self.port},localhost:{self.port}",
        ]

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        t0 = time.monotonic()
        env = dict(os.environ, **self.extra_env)
        env.pop("MLFLOW_TRACKING_URI", None)  # the server must not talk to another tracking server
        # No background job runner (a huey consumer process): tests never use server-side jobs, and it is one
        # more process to start and kill on 2 shared cores.
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        self._launch(env)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited with {self.proc.returncode}:\n{_log_tail(self.log_path)}"
                )
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        self.startup_s = time.monotonic() - t0
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"mlflow server on {self.uri} not healthy after {self.start_timeout}s:\n{_log_tail(self.log_path)}"
        )

    def stop(self) -> None:
        _kill_group(self.proc)
