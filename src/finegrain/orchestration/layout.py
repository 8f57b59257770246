"""Where outputs live: the one place that names step, member, record and run locations.

Two layouts. A *view* is what a person reads: `finegrain <step> --out` by hand, and `finegrain run --out
OUT`, whose `OUT/<step>` and `OUT/train/<backbone>/fold<k>` are links to the latest run's outputs:

    <root>/preprocess/  <root>/train/<backbone>/fold<k>/  <root>/regroup/ calibrate/ ensemble/ submit/ ...

The *work root* (`pipeline.work_root`; `OUT/work` for `finegrain run`) keeps every task's outputs under the
key of what made them (see orchestration.keys), so a changed setting gets new directories only for the tasks
that read it, and going back to an earlier setting finds its outputs again:

    <work>/<task>/<key>/            the task's outputs (<task>: preprocess, train/<backbone>/fold<k>, ...)
    <work>/<task>/<key>.json        its record: what made them (written once they are complete)
    <work>/<task>/<key>.run.json    the latest run that planned this key (how a task finds its run's context)
    <work>/runs/<run>/run.json      a run's plan: every task's key and why it runs (gc keeps the latest runs')
    <work>/runs/<run>/tasks/<task>.json       what a task did in that run (ran or reused, and why)
    <work>/runs/<run>/mlflow_parent_run.json  the run's parent MLflow run (see orchestration.parent_run)

Before tasks had keys of their own, each run's outputs went to `<work>/<12 hex digits>/<step>/`
(`legacy_root` recognises those, for gc).
"""

from __future__ import annotations

import re

from finegrain import storage

# In pipeline order; `train` holds one directory per member.
STEPS = ("preprocess", "train", "regroup", "calibrate", "ensemble", "submit", "register")
RUNS = "runs"
RECORD_SUFFIX = ".json"
CLAIM_SUFFIX = ".run.json"
RUN_FILE = "run.json"
_LEGACY_ROOT = re.compile(r"[0-9a-f]{12}")


def step_uri(root: str, step: str) -> str:
    """A step's directory in a view (`<root>/<step>`)."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; steps are {', '.join(STEPS)}")
    return storage.join(root, step)


def member_key(backbone: str, fold: int) -> str:
    """A member's name everywhere (metrics.json, calibration.json, ensemble weights): `<backbone>/fold<k>`."""
    return f"{backbone}/fold{int(fold)}"


def member_uri(root: str, backbone: str, fold: int) -> str:
    """A member's directory in a view (`<root>/train/<backbone>/fold<k>`)."""
    return storage.join(step_uri(root, "train"), backbone, f"fold{int(fold)}")


def member_task(backbone: str, fold: int) -> str:
    """A member's task name: `train/<backbone>/fold<k>`."""
    return f"train/{member_key(backbone, fold)}"


def task_step(task: str) -> str:
    """The step a task runs (`train` for every member)."""
    return task.split("/", 1)[0]


def task_root(work: str, task: str) -> str:
    """Where every key of one task lives: `<work>/<task>`."""
    step, _, member = task.partition("/")
    if step == "train":
        backbone, _, fold = member.rpartition("/fold")
        if not backbone or not fold.isdigit():
            raise ValueError(f"member task {task!r}: expected train/<backbone>/fold<k>")
        return member_uri(work, backbone, int(fold))
    return step_uri(work, step)


def output_uri(work: str, task: str, key: str) -> str:
    """The outputs of `task` made from the inputs with this key."""
    return storage.join(task_root(work, task), key)


def record_uri(work: str, task: str, key: str) -> str:
    return output_uri(work, task, key) + RECORD_SUFFIX


def claim_uri(work: str, task: str, key: str) -> str:
    return output_uri(work, task, key) + CLAIM_SUFFIX


def run_root(work: str, run: str) -> str:
    return storage.join(work, RUNS, run)


def run_file(run_root_uri: str, name: str) -> str:
    """A run-level file that belongs to no task (the plan, the parent run record, task outcomes)."""
    return storage.join(run_root_uri, name)


def outcome_uri(run_root_uri: str, task: str) -> str:
    return storage.join(run_root_uri, "tasks", task + ".json")


def parse_work_path(rel: str) -> tuple[str, str] | None:
    """(task, key) of a path under a work root (`train/a/fold0/<key>/oof.npz`, `regroup/<key>.json`, ...);
    None for run files, staging directories and anything else that is no task output."""
    parts = rel.strip("/").split("/")
    if not parts or parts[0] not in STEPS:
        return None
    depth = 4 if parts[0] == "train" else 2
    if len(parts) < depth:
        return None
    task, name = "/".join(parts[: depth - 1]), parts[depth - 1]
    if parts[0] == "train" and not parts[2].startswith("fold"):
        return None
    if name.startswith("."):  # a staging directory or lock file of storage.output_dir / storage.locks
        return None
    if len(parts) == depth:  # a file beside the key directories: its record or claim
        for suffix in (CLAIM_SUFFIX, RECORD_SUFFIX):
            if name.endswith(suffix):
                return task, name[: -len(suffix)]
        return None
    return task, name


def legacy_root(rel: str) -> str | None:
    """The name of the whole-run directory of the layout before per-task keys that a path under a work root is
    in (`3f2a9c0e1b7d/train/a/fold0/model.pt` -> `3f2a9c0e1b7d`), else None."""
    parts = rel.strip("/").split("/")
    if len(parts) >= 2 and _LEGACY_ROOT.fullmatch(parts[0]) and (
        parts[1] in STEPS or parts[1] == "mlflow_parent_run.json"
    ):
        return parts[0]
    return None
