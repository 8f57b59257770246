"""`finegrain run`: the same pipeline function as on the cluster, executed on this machine by `kfp.local`.

Embedded defaults: local files, a `sqlite:///` MLflow store, the bundled sample data (generated on first use).
Like on a cluster, each (config, dataset content) pair gets its own work root, here `<out>/work/<key>/`, so new
data is never served the members trained on old data; `<out>/preprocess`, `<out>/train`, ... (the layout
in orchestration.layout) are links to the latest run's directories. kfp.local's own bookkeeping (artifacts, cache) goes under
`<out>/.kfp/`. The summary says which tasks ran and which kfp.local served from its cache.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import warnings
from collections import Counter
from pathlib import Path

from finegrain import storage
from finegrain.config import Config
from finegrain.orchestration.layout import STEPS, member_key, member_uri, step_uri

SAMPLE_URI = "data/sample"


def _absolute_tracking_uri(uri: str) -> str:
    # kfp.local runs each task in a subprocess; a relative sqlite path must mean the same file for all of them.
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///") :]).resolve())
    return uri


def prepare_data(cfg: Config, data: str) -> str:
    """Generate the bundled sample on first use; a real dataset must already exist."""
    if not storage.is_s3(data) and not Path(data, "train").exists():
        if Path(data).resolve() == Path(SAMPLE_URI).resolve():
            from finegrain.sample.generate import make_sample

            print(f"[finegrain] generating the bundled sample dataset in {data}", flush=True)
            make_sample(data)
        else:
            raise FileNotFoundError(f"{data}: dataset not found (expected {data}/train/...)")
    return data if storage.is_s3(data) else str(Path(data).resolve())


class _TaskLog(logging.Filter):
    """Counts the tasks kfp.local executes and the ones it serves from its cache, from its own log lines.

    A filter on the root logger, not a handler: kfp.local replaces the root logger's handlers while it runs."""

    _ansi = re.compile(r"\x1b\[[0-9;]*m")
    _ran = re.compile(r"^Executing task '([^']+)'")
    _cached = re.compile(r"^Task (\S+) cache hit")

    def __init__(self) -> None:
        super().__init__()
        self.ran: Counter = Counter()
        self.cached: Counter = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = self._ansi.sub("", record.getMessage())
        if m := self._ran.match(msg):
            self.ran[m.group(1)] += 1
        elif m := self._cached.match(msg):
            self.cached[m.group(1)] += 1
            print(f"[finegrain] {m.group(1)}: reused from the kfp.local cache", flush=True)
        return True


def link_latest(out_dir: Path, work_root: Path) -> None:
    """Point `<out>/<step>` at this run's step directories (orchestration.layout); real directories left by an
    older version are left alone."""
    for step in STEPS:
        link, target = out_dir / step, Path(step_uri(str(work_root), step))
        if not target.exists():
            continue
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            print(f"[finegrain] {link} is a directory from an earlier layout; this run's is {target}", flush=True)
            continue
        link.symlink_to(os.path.relpath(target, out_dir), target_is_directory=True)


def run_pipeline_locally(
    cfg: Config, data: str | None = None, out: str = "runs/sample", runner: str = "subprocess"
) -> dict:
    """Run the whole pipeline with kfp.local; returns the summary (also printed).

    runner="subprocess": every step in this Python; "docker": every step in the image (see orchestration.docker).
    """
    from kfp import local

    from finegrain.config import config_to_text
    from finegrain.orchestration.parent_run import parent_run_id
    from finegrain.orchestration.plan import plan_run

    started = time.time()
    data = prepare_data(cfg, data or cfg.data.uri)
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = cfg.model_copy(deep=True)
    cfg.data.uri = data
    cfg.tracking.uri = _absolute_tracking_uri(cfg.tracking.uri)
    cfg.pipeline.work_root = str(out_dir / "work")
    if runner == "docker":
        from finegrain.orchestration.docker import prepare_docker_run

        cfg, init_kwargs = prepare_docker_run(cfg, out_dir, data)
    elif runner == "subprocess":
        init_kwargs = {
            "runner": local.SubprocessRunner(use_venv=False),
            "pipeline_root": str(out_dir / ".kfp" / "outputs"),
            "cache_root": str(out_dir / ".kfp" / "cache"),
        }
    else:
        raise ValueError(f"runner must be 'subprocess' or 'docker', not {runner!r}")
    config_text = config_to_text(cfg)
    # The pipeline's first task derives the same plan; computed here too, to say up front where outputs go.
    plan = plan_run(config_text)
    work_root = Path(plan["work_root"])
    print(f"[finegrain] data {data} (hash {plan['data_hash']}); outputs -> {work_root}", flush=True)
    from pipelines.training import build_pipeline  # installed with the package

    pipeline = build_pipeline(cfg)
    local.init(**init_kwargs, enable_caching=cfg.pipeline.cache, raise_on_error=True)
    tasks, root_logger = _TaskLog(), logging.getLogger()
    # kfp.local logs cache hits at INFO outside its own logging context, where the root level decides
    level = root_logger.level
    root_logger.setLevel(min(level or logging.WARNING, logging.INFO))
    root_logger.addFilter(tasks)
    try:
        with warnings.catch_warnings():
            # kfp.local warns that the image name lacks "python"; the subprocess runner uses this venv anyway.
            warnings.filterwarnings("ignore", message=".*non-Python base image.*")
            pipeline(config_text=config_text, data_uri=data, run_name=f"{cfg.pipeline.name}-local")
    finally:
        root_logger.removeFilter(tasks)
        root_logger.setLevel(level)
    link_latest(out_dir, work_root)
    summary = summarize(work_root, cfg)
    summary.update(
        work_root=str(work_root), data_hash=plan["data_hash"], parent_run_id=parent_run_id(str(work_root)),
        tasks={"ran": dict(sorted(tasks.ran.items())), "cached": dict(sorted(tasks.cached.items()))},
        elapsed_s=round(time.time() - started, 1),
    )
    print(format_summary(summary), flush=True)
    return summary


def summarize(out_dir: Path, cfg: Config) -> dict:
    """Collect what a user wants after a run from the step outputs under `out_dir`."""
    def load(uri: str) -> dict:
        p = Path(uri)
        return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}

    def step_file(step: str, name: str) -> str:
        return storage.join(step_uri(str(out_dir), step), name)

    members = []
    calibration = load(step_file("calibrate", "calibration.json"))
    for spec in cfg.train.backbones:
        for k in range(cfg.data.folds):
            m = load(storage.join(member_uri(str(out_dir), spec.name, k), "metrics.json"))
            key = member_key(spec.name, k)
            c = calibration.get(key, {})
            members.append(
                {
                    "member": key,
                    "val_logloss": m.get("val_logloss"),
                    "val_accuracy": m.get("val_accuracy"),
                    "nll_after_calibration": c.get("nll_after"),
                    "temperature": c.get("temperature"),
                }
            )
    ens = load(step_file("ensemble", "ensemble.json"))
    check = load(step_file("submit", "submission_check.json"))
    pre = load(step_file("preprocess", "summary.json"))
    registration = load(step_file("register", "registration.json"))
    return {
        "submission": step_file("submit", "submission.csv"),
        "submission_valid": bool(check.get("valid", check.get("ok", False))) if check else False,
        "members": members,
        "ensemble": {k: ens.get(k) for k in ("method", "ensemble_oof_logloss", "uniform_oof_logloss", "weights")},
        "hierarchical": ens.get("hierarchical"),
        "preprocess": {k: pre.get(k) for k in ("status", "dup_groups", "suggested_merges", "training_rows")},
        "registered_model": registration.get("registered_model"),
        "promotion": registration.get("promotion"),
    }


def format_summary(s: dict) -> str:
    def f(v):
        return f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else str(v))

    lines = ["", "finegrain run summary", "=" * 72]
    lines.append(f"{'member':40s} {'val LL':>8s} {'acc':>7s} {'LL cal':>8s} {'T':>6s}")
    for m in s["members"]:
        lines.append(
            f"{m['member']:40s} {f(m['val_logloss']):>8s} {f(m['val_accuracy']):>7s} "
            f"{f(m['nll_after_calibration']):>8s} {f(m['temperature']):>6s}"
        )
    e = s["ensemble"]
    lines.append(f"ensemble ({e.get('method')}): OOF LogLoss {f(e.get('ensemble_oof_logloss'))} "
                 f"(uniform {f(e.get('uniform_oof_logloss'))})")
    h = s.get("hierarchical") or {}
    if h.get("tried"):
        lines.append(
            f"hierarchical inference: {'used' if h.get('used') else 'not used'} (cross-fitted OOF LogLoss "
            f"{f(h.get('oof_logloss_hier'))} vs flat {f(h.get('oof_logloss_flat'))}, {h.get('n_groups')} groups)"
        )
    lines.append(f"preprocess: {s['preprocess']}")
    if "tasks" in s:
        def counts(c: dict) -> str:
            return ", ".join(f"{k} x{n}" if n > 1 else k for k, n in c.items()) or "none"

        lines.append(f"tasks run: {counts(s['tasks']['ran'])}")
        lines.append(f"tasks reused from the cache: {counts(s['tasks']['cached'])}")
    lines.append(f"submission: {s['submission']} (valid: {s['submission_valid']})")
    if s.get("registered_model"):
        lines.append(f"registered model: {s['registered_model']}")
    promotion = s.get("promotion") or {}
    if promotion.get("decision"):
        lines.append(f"promotion: {promotion['decision']} ({promotion.get('reason', '')}); "
                     f"champion: version {promotion.get('champion', '-')}")  # fmt: skip
    if "elapsed_s" in s:
        lines.append(f"elapsed: {s['elapsed_s']} s")
    return "\n".join(lines)
