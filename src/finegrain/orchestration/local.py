"""`finegrain run`: the same pipeline function as on the cluster, executed on this machine by `kfp.local`.

Embedded defaults: local files, a `sqlite:///` MLflow store, the bundled sample data (generated on first use).
Like on a cluster, each task's outputs go under the key of what it reads (orchestration.keys), here in the
work root `<out>/work/`, so a changed setting reruns only the tasks that read it and new data is never served
the members trained on old data; `<out>/preprocess`, `<out>/train/<backbone>/fold<k>`, ... (the view in
orchestration.layout) are links to the latest run's outputs. kfp.local's own bookkeeping (artifacts, cache)
goes under `<out>/.kfp/`, each task's output to `<out>/logs/` (the terminal gets a line per task:
orchestration.console). The summary says, per task, why it ran or why it was reused.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from finegrain import storage
from finegrain.config import Config
from finegrain.orchestration import layout
from finegrain.orchestration.console import TaskConsole
from finegrain.orchestration.layout import member_key, member_uri, step_uri

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


def _link(link: Path, target: Path) -> None:
    """Point `link` at `target`; a real directory there (left by an older layout) is left alone."""
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        print(f"[finegrain] {link} is a directory from an earlier layout; this run's is {target}", flush=True)
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent), target_is_directory=True)


def link_latest(out_dir: Path, tasks: dict[str, dict]) -> None:
    """Point `<out>/<step>` and `<out>/train/<backbone>/fold<k>` at this run's outputs (the view in
    orchestration.layout); links to members no longer in the run are removed."""
    train = out_dir / "train"
    if train.is_symlink():  # one link for all members, before each member had a key of its own
        train.unlink()
    for name, task in tasks.items():
        target = Path(task["uri"])
        if not target.exists():
            continue
        if layout.task_step(name) == "train":
            _link(out_dir / name, target)  # train/<backbone>/fold<k>
        else:
            _link(Path(step_uri(str(out_dir), name)), target)
    if train.is_dir():
        for link in train.glob("*/fold*"):
            if link.is_symlink() and f"train/{link.parent.name}/{link.name}" not in tasks:
                link.unlink()
        for backbone in train.iterdir():
            if backbone.is_dir() and not backbone.is_symlink() and not any(backbone.iterdir()):
                backbone.rmdir()


def task_reasons(run_root: str, tasks: dict[str, dict]) -> dict[str, str]:
    """Why each task of the run ran or was reused: what the task recorded when it executed, else (kfp.local
    served it from its cache without executing it) `reused: same inputs`."""
    from finegrain.orchestration.records import read_json

    reasons = {}
    for name in sorted(tasks, key=lambda n: (layout.STEPS.index(layout.task_step(n)), n)):  # pipeline order
        outcome = read_json(layout.outcome_uri(run_root, name))
        reasons[name] = outcome["why"] if outcome else "reused: same inputs (kfp.local cache)"
    return reasons


def run_pipeline_locally(
    cfg: Config, data: str | None = None, out: str = "runs/sample", runner: str = "subprocess",
    verbose: bool = False,
) -> dict:
    """Run the whole pipeline with kfp.local; returns the summary (also printed).

    runner="subprocess": every step in this Python; "docker": every step in the image (see orchestration.docker).
    verbose: show every task's whole output and kfp.local's log here, instead of a line per task (their logs
    in `<out>/logs/`: orchestration.console).
    """
    from kfp import local

    from finegrain.config import config_to_text
    from finegrain.orchestration.parent_run import parent_run_id
    from finegrain.orchestration.plan import describe_plan, plan_run
    from finegrain.orchestration.records import list_runs, read_run

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
    # The pipeline's first task plans the run; planned here too (not recorded) to say up front what runs.
    plan = plan_run(config_text, write=False)
    work_root = cfg.pipeline.work_root
    print(f"[finegrain] data {data} (hash {plan['data_hash']}); outputs -> {work_root}", flush=True)
    for line in describe_plan(plan):
        print(f"[finegrain] plan: {line}", flush=True)
    from pipelines.training import build_pipeline  # installed with the package

    pipeline = build_pipeline(cfg)
    local.init(**init_kwargs, enable_caching=cfg.pipeline.cache, raise_on_error=True)
    logs = out_dir / "logs"
    for old in logs.glob("*.log"):  # this run's logs only
        old.unlink()
    with TaskConsole(logs, verbose=verbose) as tasks:
        pipeline(config_text=config_text, data_uri=data, run_name=f"{cfg.pipeline.name}-local")
    run = list_runs(work_root)[-1]  # this run's plan: `finegrain run` holds the lock on `out`
    run_root, ran = layout.run_root(work_root, run), read_run(work_root, run)
    link_latest(out_dir, ran["tasks"])
    summary = summarize(out_dir, cfg)
    summary.update(
        work_root=work_root, run=run, run_root=run_root, data_hash=ran["data_hash"],
        parent_run_id=parent_run_id(run_root), keys={name: t["key"] for name, t in ran["tasks"].items()},
        why=task_reasons(run_root, ran["tasks"]),
        tasks={"ran": dict(sorted(tasks.ran.items())), "cached": dict(sorted(tasks.cached.items()))},
        elapsed_s=round(time.time() - started, 1),
    )
    print(format_summary(summary), flush=True)
    return summary


def summarize(out_dir: Path, cfg: Config) -> dict:
    """Collect what a user wants after a run from the step outputs in the view `out_dir`."""
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
                    "val_logloss_raw": m.get("val_logloss_raw"),
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
        "ensemble": {k: ens.get(k) for k in ENSEMBLE_KEYS},
        "hierarchical": ens.get("hierarchical"),
        "preprocess": {k: pre.get(k) for k in ("status", "dup_groups", "kept_in_one_fold", "suggested_merges",
                                               "training_rows")},
        "registered_model": registration.get("registered_model"),
        "promotion": registration.get("promotion"),
    }


ENSEMBLE_KEYS = ("method", "ensemble_oof_logloss", "ensemble_oof_logloss_in_sample", "uniform_oof_logloss",
                 "weights", "prior_mix")  # fmt: skip


def _preprocess_line(pre: dict) -> str:
    """`preprocess: 417 ok, 6 duplicate, 2 corrupt; 13 duplicate groups, 1 near copy pair kept in one fold,
    0 suggested merges, 353 training rows` (the pairs line only when there are some)."""
    statuses = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in (pre.get("status") or {}).items() if n)
    kept = pre.get("kept_in_one_fold") or None  # a watermarked copy, say: kept for training, next to its original
    counts = [(pre.get("dup_groups"), "duplicate groups"),
              (kept, "near copy pair kept in one fold" if kept == 1 else "near copy pairs kept in one fold"),
              (pre.get("suggested_merges"), "suggested merges"), (pre.get("training_rows"), "training rows")]  # fmt: skip
    return f"preprocess: {statuses or 'no files'}; " + ", ".join(f"{n} {what}" for n, what in counts if n is not None)


def format_summary(s: dict) -> str:
    def f(v):
        return f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else str(v))

    lines = ["", "finegrain run summary", "=" * 72]
    lines.append(f"{'member':40s} {'val LL':>8s} {'raw LL':>8s} {'acc':>7s} {'LL cal':>8s} {'T':>6s}")
    for m in s["members"]:
        lines.append(
            f"{m['member']:40s} {f(m['val_logloss']):>8s} {f(m.get('val_logloss_raw')):>8s} "
            f"{f(m['val_accuracy']):>7s} {f(m['nll_after_calibration']):>8s} {f(m['temperature']):>6s}"
        )
    lines.append("  (val LL: after one temperature fitted on the fold's own validation rows; raw LL: the softmax as is)")
    e = s["ensemble"]
    eps = (e.get("prior_mix") or {}).get("eps")
    lines.append(f"ensemble ({e.get('method')}): OOF LogLoss {f(e.get('ensemble_oof_logloss'))} cross-fitted over "
                 f"folds (in-sample {f(e.get('ensemble_oof_logloss_in_sample'))}, uniform weights "
                 f"{f(e.get('uniform_oof_logloss'))}); prior mix eps {'-' if eps is None else f'{eps:g}'}")  # fmt: skip
    h = s.get("hierarchical") or {}
    if h.get("tried"):
        lines.append(
            f"hierarchical inference: {'used' if h.get('used') else 'not used'} (cross-fitted OOF LogLoss "
            f"{f(h.get('oof_logloss_hier'))} vs flat {f(h.get('oof_logloss_flat'))}, {h.get('n_groups')} groups)"
        )
    lines.append(_preprocess_line(s["preprocess"]))
    if "tasks" in s:
        def counts(c: dict) -> str:
            return ", ".join(f"{k} x{n}" if n > 1 else k for k, n in c.items()) or "none"

        lines.append(f"tasks run: {counts(s['tasks']['ran'])}")
        lines.append(f"tasks reused from the cache: {counts(s['tasks']['cached'])}")
    if s.get("why"):
        lines.append("why each task ran or was reused:")
        lines += [f"  {name:32s} {why}" for name, why in s["why"].items()]
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
