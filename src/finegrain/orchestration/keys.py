"""What each task's outputs depend on, and the key that names them.

A task's key is a hash of the config fields the task reads plus the keys of its inputs, Merkle-style:

    preprocess        = data hash + data.* + preprocess.*
    train/<b>/fold<k> = preprocess key + the train settings that shape this member's weights (its own backbone
                        spec, not the list: see training.provenance) + fold
    regroup, calibrate = their section + every member's key
    ensemble          = ensemble.* + the members', calibrate's, regroup's and preprocess's keys (its error page's
                        pictures come through the manifest)
    submit            = submit.* + ensemble's key
    register          = the registry and model name + the alias split it serves + members, calibrate, ensemble

So a setting reaches only the tasks that read it and the tasks downstream of them: `ensemble.method` changes
the keys of ensemble, submit and register, and no member's. Data settings reach every later task through
preprocess's key. Settings that change how fast or where a task logs, never what it writes (workers, tracking
of the steps' own runs, storage retries, pipeline pod settings), are in no key.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from finegrain.config import Config, flatten
from finegrain.orchestration.layout import task_step
from finegrain.training.provenance import member_settings

# Per step, the config fields (a section or one dotted field) its outputs depend on besides its inputs' keys.
STEP_FIELDS: dict[str, tuple[str, ...]] = {
    "preprocess": ("data", "preprocess"),
    "regroup": ("regroup",),
    "calibrate": ("calibrate",),
    "ensemble": ("ensemble",),
    "submit": ("submit",),
    # the served model applies the alias split; where (and whether) it is registered is its output
    "register": ("submit.alias_mode", "tracking.enabled", "tracking.uri", "tracking.register_model"),
}
NOT_IN_KEYS = ("preprocess.workers",)  # how fast, not what
KEY_CHARS = 16


def task_settings(cfg: Config, task: str) -> dict[str, Any]:
    """The config fields `task` reads, as flat dotted keys (a member: training.provenance.member_settings)."""
    step = task_step(task)
    if step == "train":
        backbone, _, fold = task.split("/", 1)[1].rpartition("/fold")
        return member_settings(cfg, backbone, int(fold))
    fields = STEP_FIELDS[step]
    flat = flatten(cfg.model_dump(mode="json"))
    return {
        k: v for k, v in sorted(flat.items())
        if any(k == f or k.startswith(f + ".") for f in fields) and k not in NOT_IN_KEYS
    }


def task_key(task: str, settings: dict[str, Any], input_keys: dict[str, str]) -> str:
    """The key of `task`'s outputs: a hash of its settings and of its inputs' keys."""
    what = {"task": task, "settings": settings, "inputs": input_keys}
    body = json.dumps(what, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:KEY_CHARS]


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def setting_changes(old: dict[str, Any], new: dict[str, Any], limit: int = 3) -> list[str]:
    """`ensemble.method changed 'optimized' -> 'uniform'`, one per field that differs (at most `limit`, then
    how many more)."""
    missing = object()
    changed = [
        f"{k} changed {_show(old.get(k, '<unset>'))} -> {_show(new.get(k, '<unset>'))}"
        for k in sorted(set(old) | set(new))
        if old.get(k, missing) != new.get(k, missing)
    ]
    return changed[:limit] + ([f"{len(changed) - limit} more"] if len(changed) > limit else [])


def input_changes(old: dict[str, dict], new: dict[str, dict], field: str = "key") -> list[str]:
    """The names of the inputs whose `field` (key, or made_in) differs, members summarised per backbone."""
    def value(inputs: dict[str, dict], name: str) -> object:
        return (inputs.get(name) or {}).get(field)

    names = sorted(n for n in set(old) | set(new) if value(old, n) != value(new, n))
    members = [n for n in names if n.startswith("train/")]
    if len(members) > 2:
        backbones = sorted({n.split("/")[1] for n in members})
        names = [n for n in names if not n.startswith("train/")] + [f"train/{b}/*" for b in backbones]
    return names
