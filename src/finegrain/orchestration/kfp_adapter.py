"""What the Kubeflow components call: map a component's parameters and artifacts to one step call.

Steps write every file and record they produce themselves (finegrain.steps.*), at the work URI the layout gives
(finegrain.orchestration.layout: MinIO on a cluster, a local directory in `make run`). This module only
1. resolves the config text and the step's work URI, and turns input artifacts back into work URIs;
2. mirrors the step's small files into the component's output artifact, so the Kubeflow UI, lineage and caching
   see them; big binaries (checkpoints, model weights) stay at the work URI, named in `source.json`;
3. copies pages the step wrote (Markdown, HTML) into the UI artifacts and its numbers into Metrics artifacts.
The train step's work URI is stable across pod retries, which is what lets a preempted train task resume.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finegrain import storage
from finegrain.orchestration import layout
from finegrain.orchestration.parent_run import parent_run_id
from finegrain.orchestration.plan import config_from_text
from finegrain.reports import html
from finegrain.steps.outputs import scalars

# Never mirrored into KFP artifacts: large, and only needed through their work URI.
HEAVY = {"checkpoint.pt", "model.pt"}
RUN_CONTEXT_FILE = "run_context.json"
SOURCE_FILE = "source.json"
SMALL_CONFUSION_MATRIX = 40  # the KFP UI's confusion matrix is unreadable beyond a few dozen classes


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


def copy_page(work_uri: str, name: str, dst_path: str | Path) -> None:
    """A page the step wrote (Markdown or HTML), as a UI artifact's file."""
    Path(dst_path).parent.mkdir(parents=True, exist_ok=True)
    Path(dst_path).write_text(storage.read_text(storage.join(work_uri, name)), encoding="utf-8")


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


def write_run_context(out_dir: str | Path, config_text: str, work_root: str) -> None:
    """The config and work root, carried by preprocess's artifact into the train loop: kfp.local (2.17)
    replaces every task-output *parameter* entering a ParallelFor with the loop item, artifacts pass intact."""
    _write_json(Path(out_dir) / RUN_CONTEXT_FILE, {"config_text": config_text, "work_root": work_root})


def read_run_context(artifact_dir: str | Path) -> tuple[str, str]:
    ctx = json.loads((Path(artifact_dir) / RUN_CONTEXT_FILE).read_text(encoding="utf-8"))
    return ctx["config_text"], ctx["work_root"]


# ------------------------------------------------------------------------------------------------ steps
# One function per component. Each returns the step's summary as a JSON string (a small KFP output parameter
# that the local run prints) and fills the component's UI artifacts.


def run_preprocess(
    config_text: str, data_uri: str, work_root: str, out_dir: str, report_path: str, metadata: dict,
    data_hash: str = "", code_version: str = "", page_path: str = "",
) -> str:
    from finegrain.steps import preprocess

    cfg = config_from_text(config_text)
    out = layout.step_uri(work_root, "preprocess")
    summary = preprocess.run(cfg, data=data_uri, out=out, data_hash=data_hash, code_version=code_version)
    publish(out, out_dir, metadata)
    write_run_context(out_dir, config_text, work_root)
    copy_page(out, "report.md", report_path)
    if page_path:
        copy_page(out, "report.html", page_path)
    metadata.update({"data_hash": data_hash, **scalars(summary)})
    return json.dumps(summary, default=str)


def run_train(
    preprocess_dir: str, backbone: str, fold: int, out_dir: str, metadata: dict, metrics_artifact: Any = None,
    confusion_artifact: Any = None, errors_path: str = "",
) -> str:
    from finegrain.steps import train

    config_text, work_root = read_run_context(preprocess_dir)
    cfg = config_from_text(config_text)
    fold = int(float(fold))  # loop items arrive as strings on a cluster, as floats from kfp.local
    out = layout.member_uri(work_root, backbone, fold)
    result = train.run(
        cfg, manifest=str(preprocess_dir), fold=fold, backbone=backbone, out=out,
        parent_run_id=parent_run_id(work_root) or None,
    )
    publish(out, out_dir, metadata)
    metadata.update({"backbone": backbone, "fold": fold})
    fill_metrics(metrics_artifact, {k: result.get(k) for k in ("val_logloss", "val_accuracy", "train_img_per_s")})
    if confusion_artifact is not None:
        confusion = json.loads(storage.read_text(storage.join(out, "confusion.json")))
        if len(confusion["classes"]) <= SMALL_CONFUSION_MATRIX:
            confusion_artifact.log_confusion_matrix(confusion["classes"], confusion["matrix"])
        _write_json(confusion_artifact.path, confusion_artifact.metadata)
    if errors_path:  # at any size: the confused pairs and per-class table the matrix cannot show at 400 classes
        if storage.exists(storage.join(out, "errors.html")):
            copy_page(out, "errors.html", errors_path)
        else:  # a finished member reused from before the page existed; the artifact still needs its file
            Path(errors_path).parent.mkdir(parents=True, exist_ok=True)
            Path(errors_path).write_text(html.page(f"{backbone}/fold{fold}", html.paragraph(
                "No error page: this member was reused from a finegrain version that did not write one.")))
    return json.dumps(result, default=str)


def run_regroup(
    config_text: str, members: list[str], work_root: str, out_dir: str, page_path: str, metadata: dict,
) -> str:
    from finegrain.steps import regroup

    cfg = config_from_text(config_text)
    out = layout.step_uri(work_root, "regroup")
    result = regroup.run(
        cfg, members=[work_uri_of(m) for m in members], out=out, parent_run_id=parent_run_id(work_root) or None
    )
    publish(out, out_dir, metadata)
    copy_page(out, "tsne.html", page_path)
    metadata.update(scalars(result))
    return json.dumps(result, default=str)


def run_calibrate(
    config_text: str, members: list[str], work_root: str, out_dir: str, page_path: str, metadata: dict,
    metrics_artifact: Any = None,
) -> str:
    from finegrain.steps import calibrate

    cfg = config_from_text(config_text)
    out = layout.step_uri(work_root, "calibrate")
    result = calibrate.run(
        cfg, members=[work_uri_of(m) for m in members], out=out, parent_run_id=parent_run_id(work_root) or None
    )
    publish(out, out_dir, metadata)
    copy_page(out, "calibration.html", page_path)
    fill_metrics(metrics_artifact, {k: v for k, v in result.items() if k.startswith(("mean_", "pooled_"))})
    return json.dumps(result, default=str)


def run_ensemble(
    config_text: str, members: list[str], calibration_dir: str, groups_dir: str, work_root: str,
    out_dir: str, report_path: str, metadata: dict, metrics_artifact: Any = None, preprocess_dir: str = "",
    errors_path: str = "",
) -> str:
    from finegrain.steps import ensemble

    cfg = config_from_text(config_text)
    out = layout.step_uri(work_root, "ensemble")
    result = ensemble.run(
        cfg, members=[work_uri_of(m) for m in members], calibration=work_uri_of(calibration_dir), out=out,
        groups=work_uri_of(groups_dir) if groups_dir else None, parent_run_id=parent_run_id(work_root) or None,
        manifest=work_uri_of(preprocess_dir) if preprocess_dir else None,
    )
    publish(out, out_dir, metadata)
    copy_page(out, "report.md", report_path)
    if errors_path:
        copy_page(out, "error_analysis.html", errors_path)
    fill_metrics(metrics_artifact, {k: result[k] for k in ("ensemble_oof_logloss", "uniform_oof_logloss")})
    return json.dumps(result, default=str)


def run_submit(
    config_text: str, ensemble_dir: str, data_uri: str, work_root: str, out_path: str, check_path: str,
    metadata: dict,
) -> str:
    from finegrain.steps import submit

    cfg = config_from_text(config_text)
    out = layout.step_uri(work_root, "submit")
    result = submit.run(
        cfg, ensemble=work_uri_of(ensemble_dir), data=data_uri, out=out,
        parent_run_id=parent_run_id(work_root) or None,
    )
    # The Dataset artifact is the file itself (the UI offers it for download).
    storage.download_file(storage.join(out, "submission.csv"), out_path)
    copy_page(out, "submission_check.md", check_path)
    metadata.update({"work_uri": out, "submission_uri": storage.join(out, "submission.csv")})
    return json.dumps(result, default=str)


def run_register(
    config_text: str, members: list[str], calibration_dir: str, ensemble_dir: str, data_uri: str, work_root: str,
    out_dir: str, report_path: str, metadata: dict,
) -> str:
    from finegrain.steps import register

    cfg = config_from_text(config_text)
    out = layout.step_uri(work_root, "register")
    result = register.run(
        cfg, members=[work_uri_of(m) for m in members], calibration=work_uri_of(calibration_dir),
        ensemble=work_uri_of(ensemble_dir), data=data_uri, out=out, parent_run_id=parent_run_id(work_root) or None,
    )
    publish(out, out_dir, metadata)
    copy_page(out, "registration.md", report_path)
    return json.dumps(result, default=str)
