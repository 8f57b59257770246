"""The `finegrain` command line: every command's --help, and config errors exit 2 with a message naming the key."""

from __future__ import annotations

import importlib.util

import pytest
import typer.main
from typer.testing import CliRunner

from finegrain.cli import app

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
    "run": ["--out", "o"],
}
STEP_MODULE = {"run": "finegrain.local_run"}


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
