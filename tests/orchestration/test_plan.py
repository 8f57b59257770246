"""The run plan without a pipeline: which task keys a setting changes, when finished outputs are reused, and
the reason each task gives for running (orchestration.keys, .plan, .records)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finegrain.config import config_to_text, load_config
from finegrain.orchestration import layout
from finegrain.orchestration.plan import REUSED, describe_plan, plan_run, plan_tasks
from finegrain.orchestration.records import PlannedTask, list_runs

BACKBONES = "train.backbones=[{name: a}, {name: b}]"
POST = {"regroup", "calibrate", "ensemble", "submit", "register"}


def _cfg(*overrides: str, work: str = "/nowhere"):
    return load_config(None, ["data.folds=2", BACKBONES, f"pipeline.work_root={work}", *overrides])


def _keys(*overrides: str) -> dict[str, str]:
    tasks = plan_tasks(_cfg(*overrides), "/nowhere", "datahash", "v1", "run1", None)
    return {name: t["key"] for name, t in tasks.items()}


def _members(*backbones: str) -> set[str]:
    return {f"train/{b}/fold{k}" for b in backbones for k in range(2)}


@pytest.mark.parametrize(
    "override, changed",
    [
        ("ensemble.method=uniform", {"ensemble", "submit", "register"}),
        ("ensemble.hierarchical=false", {"ensemble", "submit", "register"}),
        ("calibrate.method=binned_temperature", {"calibrate", "ensemble", "register", "submit"}),
        ("regroup.perplexity=7", {"regroup", "ensemble", "submit", "register"}),
        ("submit.alias_mode=duplicate", {"submit", "register"}),
        ("tracking.register_model=other", {"register"}),
        # one backbone's learning rate: that backbone's members and what reads every member
        ("train.backbones=[{name: a}, {name: b, lr: 0.002}]", _members("b") | POST),
        ("train.lr=0.002", _members("a", "b") | POST),  # every member reads the default
        ("preprocess.near_dup_neighbours=3", {"preprocess"} | _members("a", "b") | POST),
        # how fast, or where a step logs: no output changes
        ("preprocess.workers=4", set()),
        ("train.num_workers=0", set()),
        ("tracking.experiment=elsewhere", set()),
        ("pipeline.parallelism=9", set()),
        ("storage.retries=1", set()),
    ],
)
def test_a_setting_changes_the_keys_of_the_tasks_that_read_it_and_their_dependants(override, changed):
    before, after = _keys(), _keys(override)
    assert set(before) == set(after)
    assert {name for name in before if before[name] != after[name]} == changed


def test_adding_a_backbone_keeps_the_other_members_and_removing_one_changes_no_member():
    before = _keys()
    added = _keys("train.backbones=[{name: a}, {name: b}, {name: c}]")
    assert {n for n in added if n not in before} == _members("c")
    assert all(added[n] == before[n] for n in _members("a", "b") | {"preprocess"})
    removed = _keys("train.backbones=[{name: a}]")
    assert set(removed) == set(before) - _members("b")
    assert all(removed[n] == before[n] for n in _members("a") | {"preprocess"})


def test_new_data_changes_every_key():
    cfg = _cfg()
    old = plan_tasks(cfg, "/nowhere", "hash1", "v1", "run1", None)
    new = plan_tasks(cfg, "/nowhere", "hash2", "v1", "run1", None)
    assert all(old[n]["key"] != new[n]["key"] for n in old)


def _data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "train" / "x").mkdir(parents=True, exist_ok=True)
    (data / "train" / "x" / "1.jpg").write_bytes(b"one")
    return data


def _plan(tmp_path: Path, *overrides: str) -> dict:
    cfg = _cfg(*overrides, work=str(tmp_path / "work"))
    return plan_run(config_to_text(cfg), [], str(_data(tmp_path)))


def _finish(plan: dict, names: set[str] | None = None) -> None:
    """Pretend the planned tasks ran: write outputs and records as the KFP adapter does."""
    for name, task in plan["tasks"].items():
        if task["why"] != REUSED and (names is None or name in names):
            spec = json.loads(plan["specs"][name] if name in plan["specs"] else _member_spec(plan, name))
            planned = PlannedTask.from_spec(json.dumps(spec))
            Path(planned.out).mkdir(parents=True, exist_ok=True)
            Path(planned.out, "out.bin").write_bytes(b"x" * 10)
            planned.write_record()


def _member_spec(plan: dict, name: str) -> str:
    return next(m["spec"] for m in plan["members"] if json.loads(m["spec"])["task"] == name)


def test_the_plan_records_the_run_and_each_task_finds_it(tmp_path):
    plan = _plan(tmp_path)
    assert list_runs(str(tmp_path / "work")) == [plan["run"]]
    spec = plan["specs"]["ensemble"]
    task = PlannedTask.from_spec(spec)  # through the key's claim: the run's config, root and reason
    assert task.run_root == plan["run_root"] and task.config_text == plan["config"]
    assert task.planned_why == "first run" and not task.is_done()
    assert Path(task.out).parent == tmp_path / "work" / "ensemble"
    member = json.loads(plan["members"][0]["spec"])
    assert Path(layout.output_uri(member["work"], member["task"], member["key"])).parent == (
        tmp_path / "work" / "train" / "a" / "fold0"
    )
    # a dry plan (what `finegrain run` prints first) records nothing
    cfg = _cfg(work=str(tmp_path / "work"))
    plan_run(config_to_text(cfg), [], str(_data(tmp_path)), write=False)
    assert list_runs(str(tmp_path / "work")) == [plan["run"]]


def test_finished_outputs_are_reused_and_say_why_not_otherwise(tmp_path):
    first = _plan(tmp_path)
    assert {t["why"] for t in first["tasks"].values()} == {"first run"}
    _finish(first)
    same = _plan(tmp_path)
    assert all(t["why"] == REUSED and t["made_in"] == first["run"] for t in same["tasks"].values())
    # the same specs as the run that made them: a pipeline cache answers every task
    assert same["specs"] == first["specs"] and same["members"] == first["members"]
    assert PlannedTask.from_spec(same["specs"]["submit"]).is_done()  # with the cache off: reused by its record

    changed = _plan(tmp_path, "ensemble.method=uniform", "train.backbones=[{name: a}, {name: b}, {name: c}]")
    why = {n: t["why"] for n, t in changed["tasks"].items()}
    assert why["ensemble"] == (
        "ensemble.method changed 'optimized' -> 'uniform'; "
        "inputs calibrate, regroup, train/c/fold0, train/c/fold1 changed"
    )
    assert why["submit"] == "input ensemble changed"
    assert why["train/c/fold0"] == "not in the previous run"
    assert why["train/a/fold0"] == why["preprocess"] == REUSED
    assert changed["tasks"]["train/a/fold0"]["made_in"] == first["run"]
    # what `finegrain run` prints up front: one line when every task has the same reason, else one per task
    n = len(first["tasks"])
    assert describe_plan(first) == [f"all {n} tasks run (first run)"]
    assert describe_plan(same) == [f"all {n} tasks reuse their outputs ({REUSED})"]
    lines = describe_plan(changed)
    assert len(lines) == len(changed["tasks"]) and "submit: runs (input ensemble changed)" in lines
    assert f"preprocess: reuses its outputs ({REUSED})" in lines


def test_remade_outputs_change_their_dependants_specs(tmp_path):
    first = _plan(tmp_path)
    _finish(first)
    # gc (or a person) removed preprocess's outputs: remade, and everything made from the old ones too
    Path(layout.record_uri(str(tmp_path / "work"), "preprocess", first["tasks"]["preprocess"]["key"])).unlink()
    again = _plan(tmp_path)
    assert again["tasks"]["preprocess"]["why"] == "no finished outputs for these inputs"
    assert again["tasks"]["train/a/fold0"]["why"] == "input preprocess remade"
    assert all(t["made_in"] == again["run"] for t in again["tasks"].values())
    assert all(again["tasks"][n]["key"] == first["tasks"][n]["key"] for n in first["tasks"])  # same places
    assert all(again["specs"][s] != first["specs"][s] for s in first["specs"])  # but no cache serves the old


def test_a_code_change_remakes_the_steps_and_leaves_members_to_their_provenance(tmp_path, monkeypatch):
    import finegrain.data.fingerprint as fingerprint

    first = _plan(tmp_path)
    _finish(first)
    monkeypatch.setattr(fingerprint, "code_version", lambda: "9.9+new")
    again = _plan(tmp_path)
    assert again["tasks"]["preprocess"]["why"].startswith("code changed (") and "-> 9.9+new)" in (
        again["tasks"]["preprocess"]["why"]
    )
    # a member runs again (its input was remade) and the train step reuses it if its provenance matches
    assert again["tasks"]["train/a/fold0"]["why"] == "input preprocess remade"
