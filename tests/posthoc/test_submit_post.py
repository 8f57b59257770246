"""POSTing the submission: the bearer token reaches the endpoint and nowhere else (not the console, the logs,
the step's files, an error, or another host via a redirect); only https (or http to localhost) endpoints."""

from __future__ import annotations

import http.server
import json
import logging
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from finegrain.cli import app
from finegrain.config import ConfigError, load_config
from finegrain.posthoc.submission import SubmissionError, post_submission
from tests.posthoc.test_submit import ROOT, _cfg, _e2e_probs
from tests.support.recording_http import Reply, recording_server

TOKEN = "s3cret-token-7f3a"


def _echo(status: int) -> Reply:
    """Answer `status` and echo the Authorization header in the reason line, a header and the body."""

    def reply(handler: http.server.BaseHTTPRequestHandler) -> None:
        auth = handler.headers.get("Authorization", "")
        handler.send_response(status, f"echo {auth}")
        handler.send_header("X-Echo", auth)
        handler.end_headers()
        handler.wfile.write(json.dumps({"accepted": status == 200, "you_sent": auth}).encode())

    return reply


def _redirect(status: int, location: str) -> Reply:
    def reply(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Location", location)
        handler.end_headers()

    return reply


def _cli(tmp_path: Path, ensemble: str, sample_dir: Path, out: Path, endpoint: str):
    args = ["submit", "--config", str(ROOT / "configs" / "sample.yaml"), "--ensemble", ensemble]
    args += ["--data", str(sample_dir), "--out", str(out)]
    for s in ("tracking.enabled=false", f"submit.endpoint={endpoint}", "submit.token_env=FG_TEST_TOKEN"):
        args += ["--set", s]
    return CliRunner().invoke(app, args)


def _all_text(result, out: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture) -> str:
    captured = capsys.readouterr()
    files = "".join(f.read_bytes().decode("utf-8", "replace") for f in out.rglob("*") if f.is_file())
    return result.output + str(result.exception or "") + caplog.text + captured.out + captured.err + files


def test_post_sends_the_token_to_the_endpoint_and_never_shows_an_echo_of_it(
    sample_dir, tmp_path, monkeypatch, caplog, capsys
):
    ensemble, *_ = _e2e_probs(sample_dir, tmp_path)
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("FG_TEST_TOKEN", TOKEN)
    with recording_server(_echo(200)) as (base, seen):
        out = tmp_path / "ok"
        result = _cli(tmp_path, ensemble, sample_dir, out, f"{base}/submit")
        assert result.exit_code == 0, result.output
        (got,) = seen
        assert got["headers"]["Authorization"] == f"Bearer {TOKEN}"
        assert got["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")
        assert b'name="file"; filename="submission.csv"' in got["body"]
        assert (out / "submission.csv").read_bytes() in got["body"]
        assert (out / "submission_check.json").exists()
        assert TOKEN not in _all_text(result, out, caplog, capsys)
        summary = json.loads(result.stdout)
        assert summary["post"]["status"] == 200 and summary["post"]["reply_bytes"] > len(TOKEN)


def test_a_refused_post_fails_without_showing_the_echoed_token(
    sample_dir, tmp_path, monkeypatch, caplog, capsys
):
    ensemble, *_ = _e2e_probs(sample_dir, tmp_path)
    monkeypatch.setenv("FG_TEST_TOKEN", TOKEN)
    with recording_server(_echo(401)) as (base, seen):
        out = tmp_path / "refused"
        result = _cli(tmp_path, ensemble, sample_dir, out, f"{base}/submit")
        assert result.exit_code == 1 and len(seen) == 1
        assert "HTTP 401 Unauthorized" in result.output
        assert TOKEN not in _all_text(result, out, caplog, capsys)


def test_missing_token_fails_before_anything_is_sent(sample_dir, tmp_path, monkeypatch):
    from finegrain.steps import submit

    ensemble, *_ = _e2e_probs(sample_dir, tmp_path)
    monkeypatch.delenv("FG_TEST_TOKEN", raising=False)
    with recording_server(_echo(200)) as (base, seen):
        cfg = _cfg(
            tmp_path, "tracking.enabled=false", f"submit.endpoint={base}/s", "submit.token_env=FG_TEST_TOKEN"
        )
        with pytest.raises(SubmissionError, match="FG_TEST_TOKEN"):
            submit.run(cfg, ensemble, str(sample_dir), str(tmp_path / "o"))
    assert not seen


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_is_refused_and_never_gets_the_token(status, tmp_path):
    csv = tmp_path / "submission.csv"
    csv.write_text("ID,a\nx,1\n")
    # "localhost" and "127.0.0.1" are different hosts to a browser and to urllib: a cross-host redirect.
    with recording_server(_echo(200)) as (other, other_seen):
        elsewhere = other.replace("127.0.0.1", "localhost") + "/steal"
        with recording_server(_redirect(status, elsewhere)) as (base, seen):
            with pytest.raises(
                SubmissionError, match=rf"HTTP {status} redirect to http://localhost:\d+/steal"
            ) as err:
                post_submission(csv, f"{base}/submit", TOKEN, timeout=10)
    assert len(seen) == 1 and not other_seen
    assert TOKEN not in str(err.value)


def test_a_connection_failure_says_why_without_the_query_or_the_token(tmp_path):
    csv = tmp_path / "submission.csv"
    csv.write_text("ID,a\nx,1\n")
    with socket.socket() as free:  # a port nothing listens on once this block closes it
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(SubmissionError, match=rf"POST http://127\.0\.0\.1:{port}/submit: .*refused") as err:
        post_submission(csv, f"http://127.0.0.1:{port}/submit?key=query-secret", TOKEN, timeout=5)
    assert "query-secret" not in str(err.value) and TOKEN not in str(err.value)


@pytest.mark.parametrize(
    "endpoint",
    [
        "ftp://example.com/submit",
        "file:///tmp/submission",
        "http://example.com/submit",  # plain http off this machine
        "http://10.0.0.5:8080/submit",
        "https://user:pw@example.com/submit",  # credentials in a URL that is logged
        "https:///nohost",
        "example.com/submit",
    ],
)
def test_unsafe_endpoints_are_config_errors_and_refused_at_run_time(endpoint, tmp_path):
    with pytest.raises(ConfigError, match="submit.endpoint"):
        load_config(ROOT / "configs" / "sample.yaml", [f"submit.endpoint={endpoint}"])
    csv = tmp_path / "submission.csv"
    csv.write_text("ID,a\nx,1\n")
    with pytest.raises(SubmissionError, match="submit.endpoint"):
        post_submission(csv, endpoint, TOKEN, timeout=1)


@pytest.mark.parametrize(
    "endpoint",
    ["https://example.com/submit", "http://localhost:8080/s", "http://127.0.0.1/s", "http://[::1]:9/s"],
)
def test_https_and_local_http_endpoints_are_accepted(endpoint):
    cfg = load_config(ROOT / "configs" / "sample.yaml", [f"submit.endpoint={endpoint}"])
    assert cfg.submit.endpoint == endpoint
