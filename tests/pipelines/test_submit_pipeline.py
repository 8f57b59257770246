"""`make submit-pipeline` against a stand-in of the KFP REST API on 127.0.0.1.

No cluster runs here, so this checks only what is honest to check: the requests the real kfp.Client sends
(upload of the compiled YAML, experiment reuse/creation, the run's parameters), not that a cluster runs them.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from pipelines import submit as submit_mod  # noqa: E402
from tests.support.paths import REPO as ROOT


class FakeKfp(BaseHTTPRequestHandler):
    requests: list = []
    experiments: list = []

    def _send(self, obj, code=200):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        self.requests.append(("GET", self.path, None))
        if self.path.startswith("/apis/v2beta1/pipelines"):
            self._send({"pipelines": []})
        elif self.path.startswith("/apis/v2beta1/experiments"):
            self._send({"experiments": self.experiments, "total_size": len(self.experiments)})
        else:
            self._send({})

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.requests.append(("POST", self.path, body))
        if "/pipelines/upload_version" in self.path:
            self._send({"pipeline_id": "pipe-1", "pipeline_version_id": "ver-1"})
        elif "/pipelines/upload" in self.path:
            self._send({"pipeline_id": "pipe-1", "display_name": "finegrain-training"})
        elif self.path.startswith("/apis/v2beta1/experiments"):
            self.experiments.append({"experiment_id": "exp-1", "display_name": json.loads(body)["display_name"]})
            self._send(self.experiments[-1])
        elif self.path.startswith("/apis/v2beta1/recurringruns"):
            self._send({"recurring_run_id": "rr-1"})
        elif self.path.startswith("/apis/v2beta1/runs"):
            self._send({"run_id": "run-1"})
        else:
            self._send({}, 404)

    def log_message(self, *args):
        pass


@pytest.fixture()
def kfp_api(monkeypatch):
    FakeKfp.requests = []
    FakeKfp.experiments = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKfp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("KFP_HOST", host)
    monkeypatch.setenv("KFP_NAMESPACE", "finegrain")
    yield host, FakeKfp
    server.shutdown()


def _uploaded_spec(body: bytes) -> dict:
    """The pipeline spec inside a multipart upload (one file part: headers, blank line, file, boundary)."""
    part = body.decode("utf-8").split("\r\n\r\n", 1)[1].rsplit("\r\n--", 1)[0]
    return next(yaml.safe_load_all(part))


def _dataset(tmp_path):
    (tmp_path / "data" / "train" / "a").mkdir(parents=True)
    (tmp_path / "data" / "train" / "a" / "x.jpg").write_bytes(b"not really a jpeg")
    return str(tmp_path / "data")


def test_run_uploads_compiled_pipeline_and_starts_run(kfp_api, tmp_path, capsys):
    host, api = kfp_api
    data = _dataset(tmp_path)
    rc = submit_mod.main(["run", "--config", str(ROOT / "configs/hecto.yaml"), "--set", f"data.uri={data}"])
    assert rc == 0
    posts = [(p, b) for m, p, b in api.requests if m == "POST"]
    paths = [p.split("?")[0] for p, _ in posts]
    assert paths == [
        "/apis/v2beta1/pipelines/upload",
        "/apis/v2beta1/pipelines/upload_version",
        "/apis/v2beta1/experiments",
        "/apis/v2beta1/runs",
    ]
    uploaded = posts[0][1].decode("utf-8", "replace")
    assert "PIPELINE DEFINITION" in uploaded and "nvidia.com/gpu" in uploaded
    run = json.loads(posts[3][1])
    assert run["experiment_id"] == "exp-1"
    assert run["pipeline_version_reference"] == {"pipeline_id": "pipe-1", "pipeline_version_id": "ver-1"}
    params = run["runtime_config"]["parameters"]
    # what a person edits in the UI: the config file's text and the --set overrides, nothing precomputed
    assert set(params) == {"config_text", "overrides", "data_uri", "run_name"}
    assert params["overrides"] == [f"data.uri={data}"] and params["data_uri"] == ""
    assert json.loads(params["config_text"])["train"]["epochs"] == 30
    assert run["service_account"] == "finegrain-pipeline"
    assert f"{host}/#/runs/details/run-1" in capsys.readouterr().out


def test_run_parameters_do_not_pin_the_data(kfp_api, tmp_path):
    """Adding images between two submissions changes nothing in the request: each run fingerprints the data."""
    _, api = kfp_api
    data = _dataset(tmp_path)
    args = ["run", "--config", str(ROOT / "configs/sample.yaml"), "--set", f"data.uri={data}"]
    submit_mod.main(args)
    (Path(data) / "train" / "a" / "y.jpg").write_bytes(b"another image")
    submit_mod.main(args)
    runs = [json.loads(b) for m, p, b in api.requests if m == "POST" and p.startswith("/apis/v2beta1/runs")]
    assert len(runs) == 2 and runs[0]["runtime_config"] == runs[1]["runtime_config"]
    spec = _uploaded_spec(next(b for m, p, b in api.requests if m == "POST" and "/pipelines/upload" in p))
    body = next(c for n, c in spec["components"].items() if n.startswith("comp-exit-handler"))["dag"]["tasks"]
    # preprocess's cache key (its spec, holding the data hash) comes from the plan task at run time
    spec_input = body["preprocess"]["inputs"]["parameters"]["spec"]["taskOutputParameter"]
    assert spec_input == {"outputParameterKey": "preprocess_spec", "producerTask": "plan-run"}


def test_a_bad_override_fails_before_anything_is_sent(kfp_api, tmp_path):
    from finegrain.config import ConfigError

    _, api = kfp_api
    with pytest.raises(ConfigError, match="train.epochz"):
        submit_mod.main(["run", "--config", str(ROOT / "configs/sample.yaml"), "--set", "train.epochz=1"])
    assert not [r for r in api.requests if r[0] == "POST"]


def test_schedule_creates_recurring_run(kfp_api, tmp_path, monkeypatch):
    _, api = kfp_api
    monkeypatch.setenv("IMAGE_TAG", "abc123")
    monkeypatch.setenv("REGISTRY", "registry.example.org/team")
    rc = submit_mod.main(
        ["schedule", "--config", str(ROOT / "configs/sample.yaml"), "--set", f"data.uri={_dataset(tmp_path)}"]
    )
    assert rc == 0
    posts = {p.split("?")[0]: b for m, p, b in api.requests if m == "POST"}
    body = json.loads(posts["/apis/v2beta1/recurringruns"])
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert body["max_concurrency"] == "1" or body["max_concurrency"] == 1
    # a schedule pins no data: every run it starts fingerprints the dataset and plans its own work root
    assert set(body["runtime_config"]["parameters"]) == {"config_text", "overrides", "data_uri", "run_name"}
    # IMAGE_TAG selects the images built for that commit: CUDA for train, CPU for the rest
    spec = _uploaded_spec(posts["/apis/v2beta1/pipelines/upload_version"])
    images = {n: ex["container"]["image"] for n, ex in spec["deploymentSpec"]["executors"].items()}
    assert images.pop("exec-train") == "registry.example.org/team/finegrain:abc123-cuda"
    assert set(images.values()) == {"registry.example.org/team/finegrain:abc123-cpu"}


def test_missing_host_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("KFP_HOST", raising=False)
    with pytest.raises(SystemExit, match="KFP_HOST"):
        submit_mod.main(["run", "--config", str(ROOT / "configs/sample.yaml"), "--set", f"data.uri={_dataset(tmp_path)}"])


@pytest.mark.parametrize("action", ["run", "schedule"])
def test_missing_host_is_said_before_the_config_is_read_or_anything_compiled(monkeypatch, action):
    """A config on s3:// would be fetched first, and an S3 error would hide the real problem."""
    monkeypatch.delenv("KFP_HOST", raising=False)

    def touched(*args, **kwargs):
        raise AssertionError("touched before KFP_HOST was checked")

    monkeypatch.setattr(submit_mod, "load_config", touched)
    monkeypatch.setattr(submit_mod, "compile_pipeline", touched)
    with pytest.raises(SystemExit) as exc:
        submit_mod.main([action, "--config", "s3://finegrain-data/configs/hecto.yaml"])
    message = str(exc.value.code)
    assert message.startswith("KFP_HOST is not set") and "export KFP_HOST=https://" in message
    assert "\n" not in message


@pytest.mark.parametrize("token", ["", "tok-3b1f"])
def test_submit_token_secret_is_created_only_from_a_given_token(tmp_path, token):
    """scripts/create_secrets.sh makes the optional finegrain-submit Secret only when a token is supplied."""
    import subprocess

    applied = tmp_path / "applied.txt"
    fake = tmp_path / "kubectl"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'case "$*" in\n'
        '  *"get namespace"*) exit 0 ;;\n'
        '  *"get secret"*) exit 1 ;;\n'
        '  *"create secret generic"*) for a in "$@"; do [[ $a == --from-env-file=* ]] && '
        f'echo "--- $6" >> {applied} && cat "${{a#--from-env-file=}}" >> {applied}; done; exit 0 ;;\n'
        "esac\n"
    )
    fake.chmod(0o755)
    env_file = tmp_path / "secrets.env"
    env_file.write_text(f"FINEGRAIN_SUBMIT_TOKEN={token}\n")
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "create_secrets.sh")],
        env={"PATH": "/usr/bin:/bin", "KUBECTL": str(fake), "SECRETS_ENV": str(env_file)},
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    text = applied.read_text()
    assert ("--- finegrain-submit" in text) == bool(token)
    if token:
        assert f"FINEGRAIN_SUBMIT_TOKEN={token}" in text and token not in proc.stdout + proc.stderr
