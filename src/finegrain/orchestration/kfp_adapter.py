"""What the Kubeflow components call: map a component's parameters and artifacts to one step call.

Steps write every file they produce themselves (finegrain.steps.*), at the work URI the layout gives for
the task's key (finegrain.orchestration.layout: MinIO on a cluster, a local directory in `make run`). This
module only
1. reads the task's spec (its key and what it was planned from, see orchestration.plan), finds its run's
   config through the key's claim, and turns input artifacts back into work URIs;
2. runs the step, unless outputs recorded for exactly this spec are already there (a rerun with the cache
   off): then it says so and reuses them; either way it records why (orchestration.records);
3. mirrors the step's small files into the component's output artifact, so the Kubeflow UI, lineage and
   caching see them; big binaries (checkpoints, model weights) stay at the work URI, named in `source.json`;
4. copies pages the step wrote (Markdown, HTML) into the UI artifacts, with a first line saying why the task
   ran or was reused (also in the artifact's metadata, `why`), and its numbers into Metrics artifacts.
A member's work URI depends only on its key, so it is stable across pod retries: a preempted train task
resumes.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finegrain import storage
from finegrain.config import Config
from finegrain.orchestration.parent_run import parent_run_id
from finegrain.orchestration.plan import REUSED, config_from_text
from finegrain.orchestration.records import PlannedTask
from finegrain.reports.html import page, paragraph
from finegrain.steps.outputs import scalars
from finegrain.storage.locks import LOCK_NAME, hold_lock

# Never mirrored into KFP artifacts: large, and only needed through their work URI.
HEAVY = {"checkpoint.pt", "model.pt"}
SOURCE_FILE = "source.json"
SMALL_CONFUSION_MATRIX = 40  # the KFP UI's confusion matrix is unreadable beyond a few dozen classes
# The Metrics artifacts carry the headline LogLoss beside what it is measured against (docs/design.md: which
# LogLoss is which): a member's after one fitted temperature and raw; the ensemble's cross-fitted and in-sample.
MEMBER_METRICS = ("val_logloss", "val_logloss_raw", "val_temperature", "val_accuracy", "train_img_per_s")
ENSEMBLE_METRICS = (
    "ensemble_oof_logloss", "ensemble_oof_logloss_in_sample", "uniform_oof_logloss", "prior_mix_eps",
)  # fmt: skip


def mirror(src_uri: str, dst_dir: str | Path, skip: set[str] = HEAVY) -> list[str]:
    """Copy a step's output files (except the heavy ones) into a local artifact directory."""
    dst_dir = Path(dst_dir)
    dst_dir.mkdir(parents=True, exist_ok=True)
    base = str(src_uri).rstrip("/")
    copied = []
    for uri in storage.list_uris(base):
        rel = uri[len(base) :].lstrip("/")
        if Path(rel).name in skip:
            continue
        storage.download_file(uri, dst_dir / rel)
        copied.append(rel)
    return copied


def publish(work_uri: str, artifact_dir: str | Path, metadata: dict) -> None:
    """Mirror the step's outputs into its artifact and record where the heavy files live."""
    mirror(work_uri, artifact_dir)
    _write_json(Path(artifact_dir) / SOURCE_FILE, {"work_uri": work_uri})
    metadata["work_uri"] = work_uri


def work_uri_of(artifact_dir: str | Path) -> str:
    """The work URI an output artifact mirrors (the artifact itself when it carries no pointer)."""
    p = Path(artifact_dir) / SOURCE_FILE
    return json.loads(p.read_text(encoding="utf-8"))["work_uri"] if p.exists() else str(artifact_dir)


def copy_page(work_uri: str, name: str, dst_path: str | Path, note: str = "") -> None:
    """A page the step wrote (Markdown or HTML), as a UI artifact's file, with `note` as its first line."""
    text = storage.read_text(storage.join(work_uri, name))
    if note and name.endswith(".html"):
        body = text.find("<body>")
        at = body + len("<body>") if body >= 0 else 0
        text = f"{text[:at]}<p><i>{html.escape(note)}</i></p>{text[at:]}"
    elif note:
        text = f"_{note}_\n\n{text}"
    Path(dst_path).parent.mkdir(parents=True, exist_ok=True)
    Path(dst_path).write_text(text, encoding="utf-8")


def fill_metrics(artifact: Any, values: dict) -> None:
    """Log the numbers to a Metrics artifact and give it a file (its metadata as JSON): the UI reads only the
    metadata, but kfp.local treats a cached output whose file is missing as a cache miss and reruns the task."""
    if artifact is None:
        return
    for key, value in scalars(values).items():
        artifact.log_metric(key, value)
    _write_json(artifact.path, artifact.metadata)


def _write_json(path: str | Path, obj: Any) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str), encoding="utf-8")


def _summary(work_uri: str) -> dict:
    return json.loads(storage.read_text(storage.join(work_uri, "summary.json")))


def run_task(
    spec_text: str, step: Callable[[Config, PlannedTask, str | None], Any]
) -> tuple[PlannedTask, str, dict]:
    """Run `step(cfg, task, parent_run_id)` (writing to `task.out`), or reuse outputs recorded for exactly the
    task's spec.

    Returns the task, why it ran or was reused, and the step's summary (its summary.json)."""
    task = PlannedTask.from_spec(spec_text)
    cfg = config_from_text(task.config_text)
    # One writer per output: two runs that planned the same key at once wait for each other here.
    with hold_lock(storage.join(task.out, LOCK_NAME), f"{task.name} {task.key}"):
        if task.is_done():
            ran, why = False, f"reused: {REUSED} (its record {task.key} matches)"
        else:
            step(cfg, task, parent_run_id(task.run_root) or None)
            task.write_record()
            ran, why = True, f"ran: {task.planned_why}"
    task.write_outcome(ran, why)
    print(f"{task.name}: {why}", flush=True)
    return task, why, _summary(task.out)


def _published(task: PlannedTask, why: str, out_dir: str | Path, metadata: dict) -> None:
    publish(task.out, out_dir, metadata)
    metadata.update(why=why, key=task.key, run=task.plan.get("run"))


def _note(task: PlannedTask, why: str) -> str:
    # Named with its run: a task served from KFP's cache shows the page of the run that executed it.
    return f"{why} (run {task.plan.get('run')})"


# ------------------------------------------------------------------------------------------------ steps
# One function per component. Each takes the task's spec (orchestration.plan.task_spec), returns the step's
# summary as a JSON string (a small KFP output parameter that the local run prints) and fills the component's
# UI artifacts.


def run_preprocess(spec_text: str, out_dir: str, report_path: str, metadata: dict, page_path: str = "") -> str:
    from finegrain.steps import preprocess

    data_hash = json.loads(spec_text)["inputs"]["data"]["key"]

    def step(cfg: Config, task: PlannedTask, _parent: str | None) -> None:
        # preprocess opens its own run (tagged with the data hash), not one nested under the pipeline's
        preprocess.run(cfg, data=cfg.data.uri, out=task.out, data_hash=data_hash,
                       code_version=task.plan.get("code_version", ""))  # fmt: skip

    task, why, summary = run_task(spec_text, step)
    _published(task, why, out_dir, metadata)
    copy_page(task.out, "report.md", report_path, note=_note(task, why))
    if page_path:
        copy_page(task.out, "report.html", page_path, note=_note(task, why))
    metadata.update({"data_hash": data_hash, **scalars(summary)})
    return json.dumps(summary, default=str)


def _text_or_none(uri: str) -> str | None:
    try:
        return storage.read_text(uri)
    except FileNotFoundError:
        return None


def run_train(
    preprocess_dir: str, backbone: str, fold: int, spec_text: str, out_dir: str, metadata: dict,
    metrics_artifact: Any = None, confusion_artifact: Any = None, errors_path: str = "",
) -> str:
    """Train one member at its key's URI; the train step itself reuses a finished member whose recorded
    provenance matches (the guard, whatever the directory) and resumes from its checkpoint otherwise."""
    from finegrain.steps import train

    task = PlannedTask.from_spec(spec_text)
    cfg = config_from_text(task.config_text)
    fold = int(float(fold))  # loop items arrive as strings on a cluster, as floats from kfp.local
    metrics_uri = storage.join(task.out, "metrics.json")
    before = _text_or_none(metrics_uri)
    result = train.run(
        cfg, manifest=str(preprocess_dir), fold=fold, backbone=backbone, out=task.out,
        parent_run_id=parent_run_id(task.run_root) or None,
    )
    ran = before is None or _text_or_none(metrics_uri) != before
    reused = f"reused: {REUSED} (the finished member's provenance matches)"
    why = f"ran: {task.planned_why}" if ran else reused
    task.write_record()
    task.write_outcome(ran, why)
    print(f"{task.name}: {why}", flush=True)
    _published(task, why, out_dir, metadata)
    metadata.update({"backbone": backbone, "fold": fold})
    fill_metrics(metrics_artifact, {k: result.get(k) for k in MEMBER_METRICS})
    if confusion_artifact is not None:
        confusion = json.loads(storage.read_text(storage.join(task.out, "confusion.json")))
        if len(confusion["classes"]) <= SMALL_CONFUSION_MATRIX:
            confusion_artifact.log_confusion_matrix(confusion["classes"], confusion["matrix"])
        _write_json(confusion_artifact.path, confusion_artifact.metadata)
    if errors_path:  # at any size: the confused pairs and per-class table the matrix cannot show at 400 classes
        if storage.exists(storage.join(task.out, "errors.html")):
            copy_page(task.out, "errors.html", errors_path, note=_note(task, why))
        else:  # a finished member reused from before the page existed; the artifact still needs its file
            Path(errors_path).parent.mkdir(parents=True, exist_ok=True)
            Path(errors_path).write_text(page(task.name, paragraph(
                "No error page: this member was reused from a finegrain version that did not write one.")))
    return json.dumps(result, default=str)


def run_regroup(spec_text: str, members: list[str], out_dir: str, page_path: str, metadata: dict) -> str:
    from finegrain.steps import regroup

    task, why, summary = run_task(spec_text, lambda cfg, task, parent: regroup.run(
        cfg, members=[work_uri_of(m) for m in members], out=task.out, parent_run_id=parent))  # fmt: skip
    _published(task, why, out_dir, metadata)
    copy_page(task.out, "tsne.html", page_path, note=_note(task, why))
    metadata.update(scalars(summary))
    return json.dumps(summary, default=str)


def run_calibrate(
    spec_text: str, members: list[str], out_dir: str, page_path: str, metadata: dict,
    metrics_artifact: Any = None,
) -> str:
    from finegrain.steps import calibrate

    task, why, summary = run_task(spec_text, lambda cfg, task, parent: calibrate.run(
        cfg, members=[work_uri_of(m) for m in members], out=task.out, parent_run_id=parent))  # fmt: skip
    _published(task, why, out_dir, metadata)
    copy_page(task.out, "calibration.html", page_path, note=_note(task, why))
    fill_metrics(metrics_artifact, {k: v for k, v in summary.items() if k.startswith(("mean_", "pooled_"))})
    return json.dumps(summary, default=str)


def run_ensemble(
    spec_text: str, members: list[str], calibration_dir: str, groups_dir: str, out_dir: str, report_path: str,
    metadata: dict, metrics_artifact: Any = None, preprocess_dir: str = "", errors_path: str = "",
) -> str:
    from finegrain.steps import ensemble

    task, why, summary = run_task(spec_text, lambda cfg, task, parent: ensemble.run(
        cfg, members=[work_uri_of(m) for m in members], calibration=work_uri_of(calibration_dir),
        out=task.out, groups=work_uri_of(groups_dir) if groups_dir else None, parent_run_id=parent,
        manifest=work_uri_of(preprocess_dir) if preprocess_dir else None))  # fmt: skip
    _published(task, why, out_dir, metadata)
    copy_page(task.out, "report.md", report_path, note=_note(task, why))
    if errors_path:
        copy_page(task.out, "error_analysis.html", errors_path, note=_note(task, why))
    fill_metrics(metrics_artifact, {k: summary.get(k) for k in ENSEMBLE_METRICS})
    return json.dumps(summary, default=str)


def run_submit(spec_text: str, ensemble_dir: str, out_path: str, check_path: str, metadata: dict) -> str:
    from finegrain.steps import submit

    task, why, summary = run_task(spec_text, lambda cfg, task, parent: submit.run(
        cfg, ensemble=work_uri_of(ensemble_dir), data=cfg.data.uri, out=task.out,
        parent_run_id=parent))  # fmt: skip
    # The Dataset artifact is the file itself (the UI offers it for download).
    storage.download_file(storage.join(task.out, "submission.csv"), out_path)
    copy_page(task.out, "submission_check.md", check_path, note=_note(task, why))
    metadata.update({"work_uri": task.out, "submission_uri": storage.join(task.out, "submission.csv"),
                     "why": why, "key": task.key, "run": task.plan.get("run")})  # fmt: skip
    return json.dumps(summary, default=str)


def run_register(
    spec_text: str, members: list[str], calibration_dir: str, ensemble_dir: str, out_dir: str,
    report_path: str, metadata: dict,
) -> str:
    from finegrain.steps import register

    task, why, summary = run_task(spec_text, lambda cfg, task, parent: register.run(
        cfg, members=[work_uri_of(m) for m in members], calibration=work_uri_of(calibration_dir),
        ensemble=work_uri_of(ensemble_dir), data=cfg.data.uri, out=task.out,
        parent_run_id=parent))  # fmt: skip
    _published(task, why, out_dir, metadata)
    copy_page(task.out, "registration.md", report_path, note=_note(task, why))
    return json.dumps(summary, default=str)
