"""The small JSON files that tie tasks, keys and runs together (their locations: orchestration.layout).

- A *record* `<task>/<key>.json` says what made the outputs in `<task>/<key>/`: the task's settings, its
  inputs' keys and the runs that made those (`made_in`), the code version. A task writes it once its outputs
  are complete; the plan reuses outputs only when their record matches, and gc deletes the record first.
- A *claim* `<task>/<key>.run.json` names the latest run that planned this key. A task takes as inputs only
  what its outputs depend on (so that its cache key does too); it finds its run's full config, the parent
  MLflow run and the reason it runs through the claim.
- A run's *plan* `runs/<run>/run.json` holds the config and every task's key and reason; each task that
  executes adds its *outcome* `runs/<run>/tasks/<task>.json` (ran or reused, and why).

Two runs planning the same key at the same time share its claim, so the later one's config and parent run are
what the task sees; both ask for the same outputs, and the task writes them once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from finegrain import storage
from finegrain.orchestration import layout


def read_json(uri: str) -> dict | None:
    """The JSON object at `uri`; None when there is none or it is not a readable JSON object."""
    try:
        value = json.loads(storage.read_text(uri))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def write_json(uri: str, obj: Any) -> None:
    storage.write_text(uri, json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=True, default=str) + "\n")


def list_runs(work: str) -> list[str]:
    """The names of the runs planned under `work`, oldest first (names start with their UTC start time)."""
    base = storage.join(work, layout.RUNS).rstrip("/") + "/"
    names = set()
    for uri in storage.list_uris(base):
        rel = uri[len(base):]
        name, _, rest = rel.partition("/")
        if rest == layout.RUN_FILE:
            names.add(name)
    return sorted(names)


def read_run(work: str, run: str) -> dict | None:
    return read_json(layout.run_file(layout.run_root(work, run), layout.RUN_FILE))


def matches(record: dict | None, key: str, inputs: dict[str, dict], code_version: str | None) -> bool:
    """Whether the outputs a record describes are the ones asked for: same key, inputs made in the same runs,
    and (unless `code_version` is None: members are guarded by their provenance instead) the same code."""
    if not record or record.get("key") != key:
        return False
    made = {name: (spec or {}).get("made_in", "") for name, spec in inputs.items()}
    recorded = {name: (spec or {}).get("made_in", "") for name, spec in (record.get("inputs") or {}).items()}
    if made != recorded:
        return False
    return code_version is None or record.get("code_version") == code_version


@dataclass
class PlannedTask:
    """One task as its run planned it: the spec it was given, and the run it belongs to (via the claim)."""

    spec: dict
    run_root: str
    plan: dict

    @classmethod
    def from_spec(cls, spec_text: str) -> PlannedTask:
        spec = json.loads(spec_text)
        claim_uri = layout.claim_uri(spec["work"], spec["task"], spec["key"])
        claim = read_json(claim_uri)
        plan = read_json(layout.run_file(claim["run_root"], layout.RUN_FILE)) if claim else None
        if plan is None:
            raise FileNotFoundError(f"{claim_uri}: no run planned task {spec['task']} with key {spec['key']} "
                                    "(the pipeline's plan-run task writes it)")  # fmt: skip
        return cls(spec, claim["run_root"], plan)

    @property
    def name(self) -> str:
        return self.spec["task"]

    @property
    def key(self) -> str:
        return self.spec["key"]

    @property
    def out(self) -> str:
        return layout.output_uri(self.spec["work"], self.name, self.key)

    @property
    def config_text(self) -> str:
        return self.plan["config"]

    @property
    def planned_why(self) -> str:
        return (self.plan.get("tasks", {}).get(self.name) or {}).get("why", "new inputs")

    def record(self) -> dict | None:
        return read_json(layout.record_uri(self.spec["work"], self.name, self.key))

    def is_done(self) -> bool:
        """Outputs for exactly this spec are complete (a rerun with the cache off, or two runs at once)."""
        record = self.record() or {}
        return record.get("key") == self.key and record.get("made_in") == self.spec["made_in"]

    def write_record(self) -> None:
        """Mark the outputs complete and say what made them."""
        write_json(layout.record_uri(self.spec["work"], self.name, self.key), {
            "task": self.name, "key": self.key, "made_in": self.spec["made_in"],
            "settings": self.spec["settings"], "inputs": self.spec["inputs"],
            "code_version": self.plan.get("code_version"), "uri": self.out, "run": self.plan.get("run"),
            "finished": time.time(),
        })  # fmt: skip

    def write_outcome(self, ran: bool, why: str) -> None:
        write_json(layout.outcome_uri(self.run_root, self.name), {
            "task": self.name, "ran": ran, "why": why, "key": self.key, "uri": self.out, "at": time.time(),
        })  # fmt: skip
