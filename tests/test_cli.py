"""The `finegrain` command line: every command's --help, and config errors exit 2 with a message naming the key."""

from __future__ import annotations

import importlib.util

import pytest
import typer.main
from typer.testing import CliRunner

from finegrain.cli import app
from tests.support.paths import REPO

runner = CliRunner()
COMMANDS = sorted(typer.main.get_command(app).commands)
# Required options of each command that reads a config, with placeholder values (the config fails first).
ARGS = {
    "preprocess": ["--out", "o"],
    "train": ["--manifest", "m", "--fold", "0", "--backbone", "b", "--out", "o"],
    "regroup": ["--members", "m", "--out", "o"],
    "calibrate": ["--members", "m", "--out", "o"],
    "ensemble": ["--members", "m", "--calibration", "c", "--out", "o"],
    "submit": ["--ensemble", "e", "--out", "o"],
    "register": ["--members", "m", "--calibration", "c", "--ensemble", "e", "--out", "o"],
    "predict": ["--images", "i"],
    "run": ["--out", "o"],
    "gc": ["--out", "o"],
}
STEP_MODULE = {"run": "finegrain.orchestration.local", "gc": "finegrain.orchestration.gc"}


def test_every_documented_command_exists() -> None:
    assert set(COMMANDS) == {"make-sample", *ARGS}


def test_top_level_help() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--help" in result.output
    if command != "make-sample":
        assert "--config" in result.output and "--set" in result.output


def _needs_step(command: str) -> None:
    # The CLI imports a step's module before reading the config; a step not written yet cannot be reached.
    module = STEP_MODULE.get(command, f"finegrain.steps.{command}")
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} does not exist yet")


@pytest.mark.parametrize("command", sorted(ARGS))
def test_unknown_override_key_exits_2_naming_it(command: str) -> None:
    _needs_step(command)
    result = runner.invoke(app, [command, *ARGS[command], "--set", "train.epochz=2"])
    assert result.exit_code == 2, result.output
    assert "train.epochz: unknown key" in result.output


@pytest.mark.parametrize("command", ["calibrate", "train"])
def test_wrong_type_and_missing_file_exit_2(command: str, tmp_path) -> None:
    _needs_step(command)
    result = runner.invoke(app, [command, *ARGS[command], "--set", "train.epochs=many"])
    assert result.exit_code == 2 and "train.epochs" in result.output, result.output
    missing = tmp_path / "nope.yaml"
    result = runner.invoke(app, [command, *ARGS[command], "--config", str(missing)])
    assert result.exit_code == 2 and "nope.yaml" in result.output, result.output


# ---- expected failures: one line on stderr naming the file or URI, exit 2, no traceback

QUIET = ["--config", str(REPO / "configs" / "sample.yaml"), "--set", "tracking.enabled=false"]


def _one_error_line(result, exit_code: int, *needles: str) -> str:
    assert result.exit_code == exit_code, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_missing_input_file_exits_2_naming_it(tmp_path) -> None:
    manifest = tmp_path / "no-prep"
    args = ["train", "--manifest", str(manifest), "--fold", "0", "--backbone", "resnet10t", "--out", str(tmp_path / "o")]
    _one_error_line(runner.invoke(app, [*args, *QUIET]), 2, str(manifest / "manifest.parquet"), "no such file")


def test_missing_dataset_root_exits_2_naming_it(tmp_path) -> None:
    data = tmp_path / "no-dataset"
    result = runner.invoke(app, ["preprocess", "--data", str(data), "--out", str(tmp_path / "o"), *QUIET])
    _one_error_line(result, 2, str(data), "dataset root not found")


def test_non_utf8_input_exits_2_naming_the_file(tmp_path) -> None:
    member = tmp_path / "member"
    member.mkdir()
    (member / "metrics.json").write_bytes('{"backbone": "caf\xe9"}'.encode("latin-1"))
    result = runner.invoke(app, ["calibrate", "--members", str(member), "--out", str(tmp_path / "o"), *QUIET])
    _one_error_line(result, 2, str(member / "metrics.json"), "can't decode")


def test_config_that_is_a_directory_or_not_utf8_exits_2(tmp_path) -> None:
    _one_error_line(runner.invoke(app, ["calibrate", *ARGS["calibrate"], "--config", str(tmp_path)]), 2, str(tmp_path))
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("data: {aliases: {caf\xe9: cafe}}\n".encode("latin-1"))
    _one_error_line(runner.invoke(app, ["calibrate", *ARGS["calibrate"], "--config", str(latin)]), 2, "not UTF-8")


def test_invalid_config_is_one_line_listing_every_key() -> None:
    result = runner.invoke(app, ["calibrate", *ARGS["calibrate"], *QUIET, "--set", "train.epochz=2", "--set", "train.lr=x"])
    _one_error_line(result, 2, "train.epochz: unknown key", "train.lr:")


@pytest.mark.timeout(30, method="thread")  # a hang inside pydantic-core ignores signals
def test_alias_bomb_config_exits_2_quickly(tmp_path) -> None:
    lines = ["data:", "  aliases:", '    a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"    a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    _one_error_line(runner.invoke(app, ["calibrate", *ARGS["calibrate"], "--config", str(bomb)]), 2, "bomb.yaml", "expands")


def test_storage_error_exits_2_naming_the_uri(tmp_path, monkeypatch) -> None:
    for key in ("FINEGRAIN_S3_ENDPOINT", "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    result = runner.invoke(app, ["calibrate", "--members", "s3://bucket/member", "--out", str(tmp_path / "o"), *QUIET])
    _one_error_line(result, 2, "s3://bucket/member", "no S3 endpoint is set")


def test_run_into_an_out_another_run_is_writing_exits_2_naming_it(tmp_path) -> None:
    from finegrain.storage.locks import LOCK_NAME, hold_lock

    out = tmp_path / "run"
    with hold_lock(str(out / LOCK_NAME), "the first finegrain run") as first:
        result = runner.invoke(app, ["run", "--out", str(out), "--data", str(tmp_path / "no-data"), *QUIET])
    _one_error_line(result, 2, "held by run " + first.info["run_id"], "the first finegrain run", str(out / LOCK_NAME))
    # the lock is checked before anything else: the missing dataset is reported once the lock is free
    result = runner.invoke(app, ["run", "--out", str(out), "--data", str(tmp_path / "no-data"), *QUIET])
    _one_error_line(result, 2, "no-data", "dataset not found")


@pytest.mark.parametrize("command", ["calibrate", "preprocess", "submit"])
def test_step_into_an_out_another_writer_holds_exits_2_naming_it(command: str, tmp_path) -> None:
    from finegrain.storage.locks import LOCK_NAME, hold_lock

    out = tmp_path / "o"
    args = [command, *[str(out) if a == "o" else a for a in ARGS[command]], *QUIET]
    if command == "preprocess":  # not the default data.uri: after a `make run` the bundled sample is there
        args += ["--data", str(tmp_path / "no-data")]
    with hold_lock(str(out / LOCK_NAME), "finegrain calibrate --out o") as first:
        result = runner.invoke(app, args)
    _one_error_line(result, 2, "held by run " + first.info["run_id"], "finegrain calibrate --out o", str(out / LOCK_NAME))
    # once free, the same command gets as far as its (missing) inputs, and leaves no lock behind
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "held by" not in result.output, result.output
    assert not (out / LOCK_NAME).exists()


@pytest.mark.parametrize("command", ["preprocess", "train", "run"])
def test_unknown_backbone_fails_before_any_step_work(command: str, tmp_path) -> None:
    args = [command, *[str(tmp_path / a) if a in ("o", "m") else a for a in ARGS[command]], *QUIET]
    result = runner.invoke(app, [*args, "--set", "train.backbones=[convnxt_tiny]"])
    _one_error_line(result, 2, "train.backbones[0] 'convnxt_tiny': not a timm model; did you mean convnext_tiny")
    assert not (tmp_path / "o").exists()


def test_run_on_a_dataset_that_cannot_train_is_one_line_naming_the_fix(tmp_path) -> None:
    from tests.support.datasets import imagefolder

    data = imagefolder(tmp_path / "data", {"a": 3, "b": 1})
    result = runner.invoke(app, ["run", "--data", str(data), "--out", str(tmp_path / "o"), *QUIET])
    _one_error_line(result, 1, str(data), "b (1)", "fewer images than data.folds=2", "lower data.folds")
    assert not list((tmp_path / "o").glob("work/*"))  # no task started


def test_predict_without_images_exits_2_naming_the_folder(tmp_path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    result = runner.invoke(app, ["predict", "--images", str(tmp_path / "photos"), *QUIET])
    _one_error_line(result, 2, str(tmp_path / "photos"), "no images")


def test_predict_with_a_model_that_does_not_resolve_exits_2_naming_it(tmp_path, sqlite_tracking_uri) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"\xff\xd8 not really")
    args = ["predict", "--images", str(tmp_path / "photos"), "--model", "models:/nope@champion"]
    result = runner.invoke(app, [*args, *QUIET, "--set", f"tracking.uri={sqlite_tracking_uri}"])
    _one_error_line(result, 2, "models:/nope@champion", "cannot load the model")
