"""What a pipeline run decides when it starts.

`plan_run` is the pipeline's first task (never cached): it resolves the run's config from the parameters a
person edits in the Kubeflow UI (the config text plus `key=value` overrides, the same syntax as `--set`),
fingerprints the dataset as it is *now*, and plans every task: its key (orchestration.keys: the fields it
reads plus its inputs' keys), whether finished outputs for that key can be reused, and why it must run
otherwise (which field or input changed since the previous run). Each task is then given only its *spec*
(key, settings, inputs' keys), so its KFP cache key and its output directory follow its own inputs and
nothing else. Doing this at run time, not when the run or the recurring run is created, is what lets a
scheduled run retrain on new data.

`made_in` names the run that made (or will make) a task's outputs. It is part of every spec and of every
record: outputs remade under the same key (after `finegrain gc` deleted them, or because the code changed)
change their dependants' specs too, so no cache ever serves what was computed from the old ones.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import yaml

from finegrain import storage
from finegrain.config import Config, ConfigError, config_from_dict, config_to_text, load_config
from finegrain.orchestration import layout
from finegrain.orchestration.keys import input_changes, setting_changes, task_key, task_settings
from finegrain.orchestration.records import list_runs, matches, read_json, read_run, write_json

# What every step after train reads besides its settings ("members": every member of the run).
STEP_INPUTS = {
    "regroup": ("members",), "calibrate": ("members",),
    "ensemble": ("members", "calibrate", "regroup", "preprocess"),  # the manifest: its error page's pictures
    "submit": ("ensemble",), "register": ("members", "calibrate", "ensemble"),
}  # fmt: skip
REUSED = "same inputs"


def resolve_config(
    config_text: str, overrides: list[str] | tuple[str, ...] = (), data_uri: str = ""
) -> Config:
    """The run's config: `config_text` (JSON or YAML) with `key=value` overrides; `data_uri` replaces data.uri."""
    try:
        tree = json.loads(config_text) if config_text.strip() else {}
    except json.JSONDecodeError:
        try:
            tree = yaml.safe_load(config_text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config_text: neither JSON nor YAML ({exc})") from None
    if not isinstance(tree, dict):
        raise ConfigError("config_text: top level must be a mapping of sections")
    overrides = [str(o) for o in (overrides or [])]
    if data_uri:
        overrides.append(f"data.uri={json.dumps(data_uri)}")
    return config_from_dict(tree, overrides)


def config_from_text(
    config_text: str, overrides: list[str] | tuple[str, ...] = (), data_uri: str = ""
) -> Config:
    """The run's config (see resolve_config), with its process-wide storage settings applied in this process."""
    cfg = resolve_config(config_text, overrides, data_uri)
    storage.configure(cfg.storage)
    return cfg


def config_from_file(path: str, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """A config file plus `--set` overrides (the command line's path), with its storage settings applied."""
    cfg = load_config(path, overrides)
    storage.configure(cfg.storage)
    return cfg


def member_items(cfg: Config) -> list[dict]:
    """The fan-out: one item per (backbone, fold)."""
    return [{"backbone": b.name, "fold": k} for b in cfg.train.backbones for k in range(cfg.data.folds)]


def run_name(kfp_run_id: str = "") -> str:
    """A new run's name: its UTC start time (so names sort by age) and the KFP run id (or a random suffix)."""
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1e6):06d}Z"
    suffix = "".join(c for c in kfp_run_id if c.isalnum() or c in "-_.")[:64] or uuid.uuid4().hex[:8]
    return f"{stamp}-{suffix}"


def _inputs(names: list[str]) -> str:
    return ("inputs " if len(names) > 1 else "input ") + ", ".join(names)


def _why_not_reused(
    task: dict, record: dict | None, previous: dict | None, code_version: str, member: bool
) -> str:
    """Why a task must run: what changed since the previous run (or since its outputs were made)."""
    key, inputs = task["key"], task["inputs"]
    if record and record.get("key") == key:  # outputs for this key exist, made from other versions of inputs
        if not member and record.get("code_version") != code_version:
            return f"code changed ({record.get('code_version')} -> {code_version})"
        remade = input_changes(record.get("inputs") or {}, inputs, field="made_in")
        return f"{_inputs(remade)} remade" if remade else "outputs made by another run"
    if previous is None:
        return "first run"
    before = (previous.get("tasks") or {}).get(task["name"])
    if before is None:
        return "not in the previous run"
    if before.get("key") == key:
        return "no finished outputs for these inputs"
    reasons = setting_changes(before.get("settings") or {}, task["settings"])
    old_inputs, new_inputs = dict(before.get("inputs") or {}), dict(inputs)
    old_data, new_data = old_inputs.pop("data", None), new_inputs.pop("data", None)
    if old_data != new_data:
        old_hash, new_hash = (old_data or {}).get("key"), (new_data or {}).get("key")
        reasons.append(f"the data changed (hash {old_hash} -> {new_hash})")
    changed = input_changes(old_inputs, new_inputs)
    if changed:
        reasons.append(f"{_inputs(changed)} changed")
    return "; ".join(reasons) or "new inputs"


def plan_tasks(
    cfg: Config, work: str, data_hash: str, code_version: str, run: str, previous: dict | None
) -> dict[str, dict]:
    """Every task of the run in pipeline order: {task: {name, key, made_in, settings, inputs, uri, why}}."""
    tasks: dict[str, dict] = {}

    def ref(name: str) -> dict:
        return {"key": tasks[name]["key"], "made_in": tasks[name]["made_in"]}

    def add(name: str, inputs: dict[str, dict]) -> None:
        member = layout.task_step(name) == "train"
        settings = task_settings(cfg, name)
        key = task_key(name, settings, {n: i["key"] for n, i in inputs.items()})
        task = {"name": name, "key": key, "settings": settings, "inputs": inputs,
                "uri": layout.output_uri(work, name, key)}  # fmt: skip
        record = read_json(layout.record_uri(work, name, key))
        # Members are guarded by their provenance (the train settings and the manifest's content), not code.
        if matches(record, key, inputs, None if member else code_version):
            task.update(made_in=record["made_in"], why=REUSED)
        else:
            task.update(made_in=run, why=_why_not_reused(task, record, previous, code_version, member))
        tasks[name] = task

    add("preprocess", {"data": {"key": data_hash, "made_in": ""}})
    members = [layout.member_task(item["backbone"], item["fold"]) for item in member_items(cfg)]
    for name in members:
        add(name, {"preprocess": ref("preprocess")})
    for step, needs in STEP_INPUTS.items():
        names = [n for need in needs for n in (members if need == "members" else [need])]
        add(step, {n: ref(n) for n in names})
    return tasks


def task_spec(work: str, task: dict) -> str:
    """What a task is given (its only input besides its input artifacts): its key, the run that makes its
    outputs, its settings and its inputs' keys. One line of JSON: a KFP parameter must not span lines."""
    spec = {k: task[k] for k in ("key", "made_in", "settings", "inputs")}
    return json.dumps({"task": task["name"], "work": work, **spec}, sort_keys=True, ensure_ascii=False)


def check_run_config(
    config_text: str, overrides: list[str] | tuple[str, ...] = (), data_uri: str = ""
) -> list[str]:
    """The run's config checked as training needs it: every backbone a timm model with a known tag and weights
    this machine can read (models.weight_sources); one ConfigError names every problem. The plan task runs it
    before planning, so a config edited in the Kubeflow UI fails there, before preprocess and any GPU node (the
    command line checks the same when it loads a config). Returns notes worth a warning line."""
    from finegrain.models.weight_sources import check_backbones

    return check_backbones(resolve_config(config_text, overrides, data_uri).train)


def plan_run(
    config_text: str, overrides: list[str] | tuple[str, ...] = (), data_uri: str = "", kfp_run_id: str = "",
    write: bool = True,
) -> dict[str, Any]:
    """Resolve the config, fingerprint the data and plan every task (see the module docstring).

    Returns config (JSON), data, data_hash, code_version, run, run_root, specs ({step: spec} for the steps
    outside the train loop), members (the loop items: backbone, fold and the member's spec) and tasks.
    write=False plans without recording the run (what `finegrain run` prints before it starts)."""
    from finegrain.data.fingerprint import code_version as current_code_version
    from finegrain.data.fingerprint import dataset_fingerprint

    cfg = config_from_text(config_text, overrides, data_uri)
    data_hash, code_version = dataset_fingerprint(cfg.data.uri), current_code_version()
    work = cfg.pipeline.work_root.rstrip("/")
    run = run_name(kfp_run_id)
    earlier = list_runs(work)
    previous = read_run(work, earlier[-1]) if earlier else None
    tasks = plan_tasks(cfg, work, data_hash, code_version, run, previous)
    plan = {
        "config": config_to_text(cfg), "data": cfg.data.uri, "data_hash": data_hash,
        "code_version": code_version, "run": run, "run_root": layout.run_root(work, run),
        "specs": {name: task_spec(work, t) for name, t in tasks.items() if layout.task_step(name) != "train"},
        "members": [
            {**item, "spec": task_spec(work, tasks[layout.member_task(item["backbone"], item["fold"])])}
            for item in member_items(cfg)
        ],
        "tasks": tasks,
    }
    if write:
        record = {k: plan[k] for k in ("run", "config", "data", "data_hash", "code_version", "tasks")}
        record.update(created=time.time(), kfp_run_id=kfp_run_id, previous=earlier[-1] if earlier else None)
        write_json(layout.run_file(plan["run_root"], layout.RUN_FILE), record)
        for name, task in tasks.items():  # after the plan: a claim always points at a complete one
            write_json(layout.claim_uri(work, name, task["key"]), {"run": run, "run_root": plan["run_root"]})
    return plan


def plan_markdown(plan: dict) -> str:
    """The plan as the Kubeflow UI shows it on the (never cached) plan task: every task, and why it runs."""
    rows = []
    for name, t in plan["tasks"].items():
        runs = "reused" if t["why"] == REUSED else "**runs**"
        rows.append(f"| `{name}` | {runs} | {t['why'].replace('|', '/')} | `{t['key']}` |")
    head = (f"# Run {plan['run']}\n\nData `{plan['data']}` (hash `{plan['data_hash']}`), code "
            f"`{plan['code_version']}`. A task runs when something it reads changed; otherwise its outputs "
            "are reused.\n\n| task | | why | key |\n|---|---|---|---|\n")  # fmt: skip
    return head + "\n".join(rows) + "\n"


def describe_plan(plan: dict) -> list[str]:
    """One line per task: `ensemble: runs (ensemble.method changed 'optimized' -> 'uniform')`; one line in all
    when every task has the same reason (a first run, an unchanged rerun), which the run's summary details."""
    whys = {t["why"] for t in plan["tasks"].values()}
    if len(plan["tasks"]) > 1 and len(whys) == 1:
        (why,) = whys
        return [f"all {len(plan['tasks'])} tasks {'reuse their outputs' if why == REUSED else 'run'} ({why})"]
    return [
        f"{name}: {'reuses its outputs' if t['why'] == REUSED else 'runs'} ({t['why']})"
        for name, t in plan["tasks"].items()
    ]
