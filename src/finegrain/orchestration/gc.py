"""Delete the task outputs no recent run uses: `finegrain gc`, and `pipeline.retention_runs` at a run's end.

Outputs are kept per key (orchestration.layout), so every setting ever tried leaves its outputs behind, and
going back to one finds them again. What stays: every output that one of the latest N runs planned (its
`run.json`), and every output of a run still in flight, i.e. planned, not ended and younger than IN_FLIGHT_S
(gc cannot tell a crashed run from a long one), unless the caller knows that none is in flight (`finegrain gc`
on a `finegrain run` directory holds that directory's lock, as `finegrain run` does). An output whose lock is
held (a task writing it) is never touched; gc holds it while deleting, so no task starts writing there
meanwhile. Per output, the record goes first (no reader then takes what is left for finished outputs), then
the files, then the claim. Then the directories of the runs no longer kept, the whole-run directories of the
layout before per-task keys (no run of this version uses them), and for a `finegrain run` directory
kfp.local's cache entries and artifact copies of deleted outputs.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

from finegrain import storage
from finegrain.orchestration import layout
from finegrain.orchestration.plan import config_from_text
from finegrain.orchestration.records import list_runs, read_run, write_json
from finegrain.storage.locks import LOCK_NAME, LockHeld, hold_lock

IN_FLIGHT_S = 7 * 24 * 3600


def _size(uri: str) -> int:
    try:
        return storage.size(uri)
    except FileNotFoundError:
        return 0


def _delete_files(uris: list[str]) -> int:
    freed = 0
    for uri in uris:
        freed += _size(uri)
        storage.delete(uri)
    return freed


def _remove_empty_dirs(root: Path) -> None:
    for path in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(path.iterdir()):
            path.rmdir()


def _kept_runs(work: str, runs: list[str], keep: int, in_flight_possible: bool) -> list[str]:
    kept = set(runs[-keep:])
    if in_flight_possible:
        now = time.time()
        for run in runs[:-keep]:
            plan = read_run(work, run) or {}
            if not plan.get("ended") and now - float(plan.get("created", 0)) < IN_FLIGHT_S:
                kept.add(run)
    return sorted(kept)


def collect_garbage(
    work: str, keep: int = 1, *, in_flight_possible: bool = True, dry_run: bool = False
) -> dict:
    """Delete what the latest `keep` runs (and runs in flight) do not use under the work root `work`.

    Returns {"freed": [{"uri", "bytes"}], "bytes", "kept_runs", "removed_runs", "in_use": [uri]}."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1 (the latest run), got {keep}")
    work = str(work).rstrip("/")
    runs = list_runs(work)
    kept = _kept_runs(work, runs, keep, in_flight_possible)
    plans = [read_run(work, run) or {} for run in kept]
    used = {(task, entry["key"]) for plan in plans for task, entry in (plan.get("tasks") or {}).items()}
    outputs: dict[tuple[str, str], list[str]] = defaultdict(list)
    legacy: dict[str, list[str]] = defaultdict(list)
    for uri in storage.list_uris(work):
        rel = uri[len(work):]
        found, old_root = layout.parse_work_path(rel), layout.legacy_root(rel)
        if found is not None:
            outputs[found].append(uri)
        elif old_root is not None:
            legacy[storage.join(work, old_root)].append(uri)
    result: dict = {"freed": [], "bytes": 0, "kept_runs": kept, "removed_runs": [], "in_use": []}
    for (task, key), uris in sorted(outputs.items()):
        if (task, key) in used:
            continue
        out = layout.output_uri(work, task, key)
        record, claim = layout.record_uri(work, task, key), layout.claim_uri(work, task, key)
        files = [u for u in uris if u not in (record, claim) and storage.basename(u) != LOCK_NAME]
        if dry_run:
            result["freed"].append({"uri": out, "bytes": sum(_size(u) for u in uris)})
            continue
        try:
            with hold_lock(storage.join(out, LOCK_NAME), f"finegrain gc {out}", wait_s=0):
                first, last = [u for u in uris if u == record], [u for u in uris if u == claim]
                freed = _delete_files(first + files + last)
        except LockHeld:
            result["in_use"].append(out)
            continue
        result["freed"].append({"uri": out, "bytes": freed})
    for run in runs:
        if run in kept:
            continue
        root = layout.run_root(work, run)
        freed = sum(_size(u) for u in storage.list_uris(root))
        if not dry_run:
            storage.delete(root)
        result["removed_runs"].append(run)
        result["freed"].append({"uri": root, "bytes": freed})
    for root, uris in sorted(legacy.items()):
        result["freed"].append({"uri": root, "bytes": sum(_size(u) for u in uris)})
        if not dry_run:
            storage.delete(root)
    if not storage.is_s3(work) and Path(work).is_dir() and not dry_run:
        _remove_empty_dirs(Path(work))
    result["bytes"] = sum(f["bytes"] for f in result["freed"])
    return result


def _strings(node: object, key: str = "") -> list[tuple[str, str]]:
    """Every (key, string value) in a parsed JSON document."""
    if isinstance(node, dict):
        return [pair for k, v in node.items() for pair in _strings(v, str(k))]
    if isinstance(node, list):
        return [pair for v in node for pair in _strings(v, key)]
    return [(key, node)] if isinstance(node, str) else []


def collect_kfp_local(kfp_dir: Path, dry_run: bool = False) -> list[dict]:
    """kfp.local's leftovers in a `finegrain run` directory: cache entries whose task outputs no longer exist
    (never served again: the plan gives remade outputs a new spec) and the per-run artifact copies that no
    remaining cache entry points at."""
    kfp_dir = Path(kfp_dir).resolve()  # kfp.local writes absolute paths into its cache entries
    cache, outputs = kfp_dir / "cache", kfp_dir / "outputs"
    runs = sorted(p for p in outputs.iterdir() if p.is_dir()) if outputs.is_dir() else []
    freed, referenced = [], set()
    for entry in sorted(cache.glob("*.json")) if cache.is_dir() else []:
        try:
            strings = _strings(json.loads(entry.read_text(encoding="utf-8")))
        except ValueError:
            continue  # not ours to judge
        # `work_uri`: where our artifacts' outputs live (kfp_adapter.publish puts it in their metadata)
        if any(key == "work_uri" and not Path(value).exists() for key, value in strings):
            freed.append({"uri": str(entry), "bytes": entry.stat().st_size})
            if not dry_run:
                entry.unlink()
        else:
            referenced.update(run for run in runs for _, value in strings if value.startswith(f"{run}/"))
    for run in runs:
        if run not in referenced:
            size = sum(p.stat().st_size for p in run.rglob("*") if p.is_file())
            freed.append({"uri": str(run), "bytes": size})
            if not dry_run:
                storage.delete(str(run))
    return freed


def work_root_of(out: str) -> tuple[str, Path | None]:
    """The work root to collect for `finegrain gc --out OUT`, and the `finegrain run` directory it belongs to
    (None: OUT is itself a work root, e.g. `pipeline.work_root` on S3)."""
    if not storage.is_s3(out) and Path(out, "work", layout.RUNS).is_dir():
        root = Path(out).resolve()  # the paths in the runs' plans and in kfp.local's cache are absolute
        return str(root / "work"), root
    return out, None


def end_run_and_collect(config_text: str, overrides: list[str], kfp_run_id: str, state: str) -> dict | None:
    """The exit task's part: mark this run ended; after a run that succeeded, apply `pipeline.retention_runs`.

    Never raises: the pipeline's work is done, and tidying up must not turn it into a failed run."""
    try:
        cfg = config_from_text(config_text, overrides)
        work = cfg.pipeline.work_root.rstrip("/")
        suffix = "-" + "".join(c for c in kfp_run_id if c.isalnum() or c in "-_.")[:64]
        for run in (r for r in list_runs(work) if kfp_run_id and r.endswith(suffix)):
            plan = read_run(work, run) or {}
            write_json(layout.run_file(layout.run_root(work, run), layout.RUN_FILE),
                       {**plan, "ended": time.time(), "state": state})  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - see the docstring
        print(f"run {kfp_run_id}: not marked ended ({type(exc).__name__}: {exc})", flush=True)
        return None
    if state.upper() != "SUCCEEDED" or cfg.pipeline.retention_runs < 1:
        return None
    try:
        result = collect_garbage(work, cfg.pipeline.retention_runs)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        print(f"retention: not applied ({type(exc).__name__}: {exc})", flush=True)
        return None
    print(format_freed(result), flush=True)
    return result


def format_freed(result: dict, dry_run: bool = False) -> str:
    """What gc freed (or would free), one line per output or run with its bytes, then the total."""
    verb = "would free" if dry_run else "freed"
    lines = [f"{verb} {f['uri']} ({f['bytes']:,} bytes)" for f in result["freed"]]
    lines += [f"kept {uri}: in use (its lock is held)" for uri in result.get("in_use", [])]
    runs = result.get("kept_runs", [])
    lines.append(f"{verb} {result['bytes']:,} bytes in {len(result['freed'])} places; kept the outputs of "
                 f"{len(runs)} run(s){': ' + ', '.join(runs) if runs else ''}")  # fmt: skip
    return "\n".join(lines)
