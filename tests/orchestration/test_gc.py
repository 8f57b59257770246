"""`finegrain gc` and `pipeline.retention_runs`: what the latest runs use stays, the rest goes, locally and on
S3, never an output whose lock is held; kfp.local's copies of deleted outputs go with them."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from finegrain import storage
from finegrain.cli import app
from finegrain.config import config_to_text, load_config
from finegrain.orchestration import layout
from finegrain.orchestration.gc import collect_garbage, collect_kfp_local, end_run_and_collect
from finegrain.orchestration.plan import REUSED, plan_run
from finegrain.orchestration.records import PlannedTask, list_runs, read_run
from finegrain.storage.locks import LOCK_NAME, hold_lock
from tests.support.paths import REPO

CONFIG = ["--config", str(REPO / "configs" / "sample.yaml")]


def _run(work: str, data: Path, method: str, kfp_run_id: str = "") -> dict:
    """Plan a run (ensemble.method=`method`) and pretend its tasks ran, as the KFP adapter records them."""
    cfg = load_config(
        None, ["data.folds=2", "train.backbones=[resnet10t]", f"ensemble.method={method}", f"pipeline.work_root={work}"]
    )
    plan = plan_run(config_to_text(cfg), [], str(data), kfp_run_id=kfp_run_id)
    specs = [*plan["specs"].values(), *(m["spec"] for m in plan["members"])]
    for spec in specs:
        task = PlannedTask.from_spec(spec)
        if plan["tasks"][task.name]["why"] != REUSED:
            storage.write_bytes(storage.join(task.out, "out.bin"), b"x" * 100)
            task.write_record()
    return plan


@pytest.fixture()
def data(tmp_path) -> Path:
    (tmp_path / "data" / "train" / "x").mkdir(parents=True)
    (tmp_path / "data" / "train" / "x" / "1.jpg").write_bytes(b"one")
    return tmp_path / "data"


def _outputs(work: str) -> set[tuple[str, str]]:
    found = {layout.parse_work_path(u[len(work):]) for u in storage.list_uris(work)}
    return {f for f in found if f is not None}


def _used(plan: dict) -> set[tuple[str, str]]:
    return {(name, t["key"]) for name, t in plan["tasks"].items()}


@pytest.mark.parametrize("where", ["local", "s3"])
def test_gc_keeps_what_the_latest_runs_use_and_frees_the_rest(where, data, tmp_path, request):
    work = str(tmp_path / "work") if where == "local" else request.getfixturevalue("s3_bucket") + "/runs"
    old, middle, new = (_run(work, data, m) for m in ("optimized", "uniform", "inverse_logloss"))
    assert len(list_runs(work)) == 3
    assert _used(old) - _used(new) == {(n, old["tasks"][n]["key"]) for n in ("ensemble", "submit", "register")}

    kept = collect_garbage(work, keep=2, in_flight_possible=False)
    assert kept["kept_runs"] == [middle["run"], new["run"]] and kept["removed_runs"] == [old["run"]]
    assert _outputs(work) == _used(middle) | _used(new)  # old's ensemble, submit, register went
    assert kept["bytes"] > 3 * 100

    freed = collect_garbage(work, keep=1, in_flight_possible=False)
    assert _outputs(work) == _used(new) and list_runs(work) == [new["run"]]
    assert {f["uri"] for f in freed["freed"]} >= {middle["tasks"]["ensemble"]["uri"], middle["run_root"]}
    # what the latest run uses is intact: a new plan reuses every output
    again = _run(work, data, "inverse_logloss")
    assert all(t["why"] == REUSED for t in again["tasks"].values())


def test_gc_frees_the_whole_run_directories_of_the_layout_before_per_task_keys(data, tmp_path):
    work = tmp_path / "work"
    old = work / "3f2a9c0e1b7d"  # <work>/<hash of config and data>/<step>/ before tasks had keys of their own
    (old / "train" / "a" / "fold0").mkdir(parents=True)
    (old / "train" / "a" / "fold0" / "model.pt").write_bytes(b"w" * 1000)
    (old / "mlflow_parent_run.json").write_text("{}")
    (work / "notes").mkdir(parents=True)
    (work / "notes" / "readme.txt").write_text("not ours to judge")
    latest = _run(str(work), data, "optimized")
    result = collect_garbage(str(work), keep=1, in_flight_possible=False)
    assert {"uri": str(old), "bytes": 1002} in result["freed"] and not old.exists()
    assert (work / "notes" / "readme.txt").exists() and _outputs(str(work)) == _used(latest)


def test_gc_never_touches_an_output_in_use_or_a_run_in_flight(data, tmp_path):
    work = str(tmp_path / "work")
    old = _run(work, data, "optimized")
    _run(work, data, "uniform")
    busy = old["tasks"]["ensemble"]["uri"]
    with hold_lock(storage.join(busy, LOCK_NAME), "a task writing it"):
        result = collect_garbage(work, keep=1, in_flight_possible=False)
    assert result["in_use"] == [busy] and Path(busy, "out.bin").exists()
    assert not Path(old["tasks"]["submit"]["uri"]).exists()  # the others went

    # a run that has not ended (a long one on a cluster) keeps its outputs, unless it is known not to be running
    in_flight = _run(work, data, "optimized")
    _run(work, data, "uniform")
    assert in_flight["run"] in collect_garbage(work, keep=1)["kept_runs"]
    assert Path(in_flight["tasks"]["ensemble"]["uri"], "out.bin").exists()
    plan_file = layout.run_file(in_flight["run_root"], layout.RUN_FILE)
    record = json.loads(Path(plan_file).read_text())
    Path(plan_file).write_text(json.dumps({**record, "ended": time.time()}))
    collect_garbage(work, keep=1)
    assert not Path(in_flight["tasks"]["ensemble"]["uri"]).exists()


def test_the_exit_task_marks_the_run_ended_and_applies_the_retention(data, tmp_path):
    work = str(tmp_path / "work")
    first = _run(work, data, "optimized", kfp_run_id="kfp-41")
    end_run_and_collect(first["config"], [], "kfp-41", "SUCCEEDED")  # its config keeps everything
    assert read_run(work, first["run"])["state"] == "SUCCEEDED" and Path(first["run_root"]).exists()
    cfg = load_config(None, ["data.folds=2", "train.backbones=[resnet10t]", "ensemble.method=uniform",
                             f"pipeline.work_root={work}", "pipeline.retention_runs=1"])  # fmt: skip
    plan = plan_run(config_to_text(cfg), [], str(data), kfp_run_id="kfp-42")
    assert plan["run"].endswith("-kfp-42")
    assert end_run_and_collect(config_to_text(cfg), [], "kfp-42", "FAILED") is None  # a failed run: no gc
    assert read_run(work, plan["run"])["state"] == "FAILED" and Path(first["run_root"]).exists()
    result = end_run_and_collect(config_to_text(cfg), [], "kfp-42", "SUCCEEDED")
    assert read_run(work, plan["run"])["ended"] and result["removed_runs"] == [first["run"]]
    assert not Path(first["tasks"]["ensemble"]["uri"]).exists()
    assert Path(first["tasks"]["preprocess"]["uri"]).exists()  # shared with the latest run


def _kfp_entry(kfp: Path, run: str, work_uri: str) -> Path:
    """What kfp.local leaves for a task it ran: its artifact copy and a cache entry pointing at it."""
    artifact = kfp / "outputs" / run / "ensemble" / "result"
    artifact.mkdir(parents=True)
    (artifact / "ensemble.json").write_text("{}")
    entry = {"result": {"__kfp_artifact__": True, "uri": str(artifact), "metadata": {"work_uri": work_uri}}}
    (kfp / "cache").mkdir(exist_ok=True)
    (kfp / "cache" / f"{run}.json").write_text(json.dumps(entry))
    return artifact


def test_kfp_local_cache_entries_of_deleted_outputs_go_with_their_artifact_copies(tmp_path):
    kept, gone = tmp_path / "work" / "ensemble" / "k1", tmp_path / "work" / "ensemble" / "k0"
    kept.mkdir(parents=True)
    kfp = tmp_path / ".kfp"
    for run, work_uri in (("pipe-1", gone), ("pipe-2", kept)):
        _kfp_entry(kfp, run, str(work_uri))
    (kfp / "outputs" / "pipe-3").mkdir()  # a run whose every task came from the cache
    freed = {Path(f["uri"]).name for f in collect_kfp_local(kfp)}
    assert freed == {"pipe-1.json", "pipe-1", "pipe-3"}
    assert sorted(p.name for p in (kfp / "outputs").iterdir()) == ["pipe-2"]


def test_finegrain_gc_on_a_run_directory_says_what_it_freed_and_waits_for_no_run(data, tmp_path, monkeypatch):
    out = tmp_path / "out"
    work = str(out / "work")
    old = _run(work, data, "optimized")
    new = _run(work, data, "uniform")
    kept = _kfp_entry(out / ".kfp", "pipe-new", new["tasks"]["ensemble"]["uri"])
    monkeypatch.chdir(tmp_path)  # `--out out`: kfp.local's cache holds absolute paths all the same
    runner = CliRunner()
    with hold_lock(storage.join(str(out), LOCK_NAME), "finegrain run --out out"):
        busy = runner.invoke(app, ["gc", "--out", "out", *CONFIG])
    assert busy.exit_code == 2 and "finegrain run --out out" in busy.output  # names the run in progress
    dry = runner.invoke(app, ["gc", "--out", "out", "--dry-run", *CONFIG])
    assert dry.exit_code == 0 and Path(old["tasks"]["ensemble"]["uri"]).exists()
    assert f"would free {old['tasks']['ensemble']['uri']} (" in dry.output
    result = runner.invoke(app, ["gc", "--out", "out", "--keep", "1", *CONFIG])
    assert result.exit_code == 0, result.output
    assert kept.exists()  # the latest run's cache entry and artifact copy stay
    # the output, its record and its claim, with their bytes
    ensemble = re.escape(old["tasks"]["ensemble"]["uri"])
    line = re.search(rf"^freed {ensemble} \(([\d,]+) bytes\)$", result.output, re.M)
    assert line and int(line.group(1).replace(",", "")) > 100
    assert "kept the outputs of 1 run(s)" in result.output
    assert not Path(old["tasks"]["ensemble"]["uri"]).exists() and not Path(old["run_root"]).exists()
