"""What the Kubeflow components call: run one step and hand its outputs to KFP.

Each step writes its files under `<work_root>/<step>/...` (MinIO on a cluster, a local directory in `make run`),
the layout DESIGN.md gives for `finegrain run`. The small files are mirrored into the component's output
artifact so the Kubeflow UI, lineage and caching see them; big binaries (checkpoints, model weights) stay at the
work URI and are referenced by it, so they are not copied twice. The train step's work URI is stable across pod
retries, which is what lets a preempted train task resume from its last checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finegrain import storage
from finegrain.config import Config, config_from_dict

# Never mirrored into KFP artifacts: large, and only needed through their work URI.
_HEAVY = {"checkpoint.pt", "model.pt"}


def config_from_text(config_text: str) -> Config:
    cfg = config_from_dict(json.loads(config_text))
    storage.configure(cfg.storage)  # retries and multipart size from the config, in this task's process
    return cfg


def step_uri(work_root: str, *parts: str) -> str:
    return storage.join(work_root, *parts)


def mirror(src_uri: str, dst_dir: str | Path, skip: set[str] = _HEAVY) -> list[str]:
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


def write_json(path: str | Path, obj: Any) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str), encoding="utf-8")


def copy_text(src_uri: str, dst_path: str | Path) -> None:
    Path(dst_path).parent.mkdir(parents=True, exist_ok=True)
    Path(dst_path).write_text(storage.read_text(src_uri), encoding="utf-8")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def html_page(title: str, body_html: str) -> str:
    """A static, self-contained page for the KFP UI's HTML viewer (no external scripts or styles)."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>"
        + title
        + "</title><style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body><h2>"
        + title
        + "</h2>"
        + body_html
        + "</body></html>"
    )


def png_as_img_tag(png_path: str | Path, alt: str = "") -> str:
    import base64

    data = base64.b64encode(Path(png_path).read_bytes()).decode("ascii")
    return f"<img alt='{alt}' style='max-width:100%' src='data:image/png;base64,{data}'/>"


# ------------------------------------------------------------------------------------------------ steps
# One function per component. Each returns a JSON summary string (a small KFP output parameter that the
# local run prints) and fills the component's UI artifacts.

SMALL_CONFUSION_MATRIX = 40  # the KFP UI's confusion matrix is unreadable beyond a few dozen classes


PARENT_RUN_FILE = "mlflow_parent_run.json"
RUN_CONTEXT_FILE = "run_context.json"


def start_parent_run(
    config_text: str, run_name: str, data_hash: str, code_version: str, work_root: str, kfp_run_id: str = ""
) -> str:
    """Open the pipeline's parent MLflow run and leave its id at `<work_root>/mlflow_parent_run.json`.

    Steps read the id from there rather than from a task output: an input that changes every run would make
    every step a cache miss. The run is tagged with the KFP run id so the exit handler can find and end it."""
    from finegrain import tracking

    cfg = config_from_text(config_text)
    tags = {
        "finegrain.data_hash": data_hash, "finegrain.code_version": code_version,
        "finegrain.work_root": work_root, "finegrain.kfp_run_id": kfp_run_id,
    }
    run_id = tracking.start_parent_run(cfg.tracking, run_name, tags=tags) or ""
    record = {"run_id": run_id, "kfp_run_id": kfp_run_id}
    storage.write_text(step_uri(work_root, PARENT_RUN_FILE), json.dumps(record))
    return run_id


def parent_run_id(work_root: str) -> str:
    """The parent MLflow run id the latest pipeline run on this work root opened ("" when tracking was off)."""
    try:
        return json.loads(storage.read_text(step_uri(work_root, PARENT_RUN_FILE)))["run_id"]
    except FileNotFoundError:
        return ""


def write_run_context(out_dir: str | Path, config_text: str, work_root: str) -> None:
    """The config and work root, carried by preprocess's artifact into the train loop: kfp.local (2.17)
    replaces every task-output *parameter* entering a ParallelFor with the loop item, artifacts pass intact."""
    write_json(Path(out_dir) / RUN_CONTEXT_FILE, {"config_text": config_text, "work_root": work_root})


def read_run_context(artifact_dir: str | Path) -> tuple[str, str]:
    ctx = json.loads((Path(artifact_dir) / RUN_CONTEXT_FILE).read_text(encoding="utf-8"))
    return ctx["config_text"], ctx["work_root"]


def _source_file(dst_dir: str | Path, work_uri: str) -> None:
    # Artifacts carry where their heavy files live, so later steps (model registration) can find them.
    write_json(Path(dst_dir) / "source.json", {"work_uri": work_uri})


def work_uri_of(artifact_dir: str | Path) -> str | None:
    p = Path(artifact_dir) / "source.json"
    return json.loads(p.read_text())["work_uri"] if p.exists() else None


def run_preprocess(
    config_text: str, data_uri: str, work_root: str, out_dir: str, report_path: str, metadata: dict,
    data_hash: str = "", code_version: str = "",
) -> str:
    from finegrain import tracking
    from finegrain.steps import preprocess as step

    cfg = config_from_text(config_text)
    out = step_uri(work_root, "preprocess")
    summary = step.run(cfg, data=data_uri, out=out)
    storage.write_text(step_uri(out, "summary.json"), json.dumps(summary, indent=2, ensure_ascii=False, default=str))
    mirror(out, out_dir)
    _source_file(out_dir, out)
    write_run_context(out_dir, config_text, work_root)
    copy_text(step_uri(out, "report.md"), report_path)
    # Preprocess is the step that is cached across pipeline runs, so its MLflow run stands on its own
    # (a parent run id input would change every run and defeat the cache); it is tagged with the data hash.
    with tracking.Tracker(cfg.tracking, "preprocess", tags={"finegrain.data_hash": data_hash}) as tr:
        tr.log_params({"data_uri": data_uri, "code_version": code_version})
        tr.log_metrics({k: float(v) for k, v in _scalars(summary).items()})
        tr.log_artifacts(out_dir, "preprocess")
    metadata.update({"work_uri": out, "data_hash": data_hash, **_scalars(summary)})
    return json.dumps(summary, default=str)


def write_metadata_file(artifact: Any) -> None:
    """Give a Metrics-type artifact a file (its metadata as JSON): the UI reads only the metadata, but
    kfp.local treats a cached output whose file is missing as a cache miss, and would rerun the task."""
    if artifact is not None:
        write_json(artifact.path, artifact.metadata)


def _scalars(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def run_train(
    preprocess_dir: str, backbone: str, fold: int, out_dir: str, metadata: dict, metrics_artifact: Any = None,
    confusion_artifact: Any = None,
) -> str:
    import numpy as np

    from finegrain.steps import train as step

    config_text, work_root = read_run_context(preprocess_dir)
    cfg = config_from_text(config_text)
    fold = int(float(fold))  # loop items arrive as strings on a cluster, as floats from kfp.local
    out = step_uri(work_root, "train", backbone, f"fold{fold}")
    result = step.run(
        cfg, manifest=str(preprocess_dir), fold=int(fold), backbone=backbone, out=out,
        parent_run_id=parent_run_id(work_root) or None,
    )
    mirror(out, out_dir)
    _source_file(out_dir, out)
    metadata.update({"work_uri": out, "backbone": backbone, "fold": int(fold)})
    if metrics_artifact is not None:
        for key in ("val_logloss", "val_accuracy", "train_img_per_s"):
            if isinstance(result.get(key), (int, float)):
                metrics_artifact.log_metric(key, float(result[key]))
    if confusion_artifact is not None:
        oof = np.load(Path(out_dir) / "oof.npz", allow_pickle=False)
        classes = [str(c) for c in oof["classes"]]
        if len(classes) <= SMALL_CONFUSION_MATRIX:
            pred = oof["logits"].argmax(axis=1)
            matrix = np.zeros((len(classes), len(classes)), dtype=int)
            np.add.at(matrix, (oof["labels"].astype(int), pred), 1)
            confusion_artifact.log_confusion_matrix(classes, matrix.tolist())
    write_metadata_file(metrics_artifact)
    write_metadata_file(confusion_artifact)
    return json.dumps(result, default=str)


def run_regroup(
    config_text: str, members: list[str], work_root: str, out_dir: str, page_path: str, metadata: dict,
) -> str:
    from finegrain.steps import regroup as step

    cfg = config_from_text(config_text)
    out = step_uri(work_root, "regroup")
    result = step.run(cfg, members=list(members), out=out, parent_run_id=parent_run_id(work_root) or None)
    mirror(out, out_dir)
    # The step writes a self-contained page (plot embedded, groups table) for exactly this viewer.
    Path(page_path).write_text(_read(out_dir, "tsne.html"), encoding="utf-8")
    metadata.update({"work_uri": out, **_scalars(result)})
    return json.dumps(result, default=str)


def _read(out_dir: str | Path, name: str) -> str:
    p = Path(out_dir) / name
    return p.read_text(encoding="utf-8") if p.exists() else ""


def run_calibrate(
    config_text: str, members: list[str], work_root: str, out_dir: str, page_path: str, metadata: dict,
    metrics_artifact: Any = None,
) -> str:
    from finegrain.steps import calibrate as step

    cfg = config_from_text(config_text)
    out = step_uri(work_root, "calibrate")
    result = step.run(cfg, members=list(members), out=out, parent_run_id=parent_run_id(work_root) or None)
    mirror(out, out_dir)
    table = json.loads(_read(out_dir, "calibration.json") or "{}")
    rows = [{"member": k, **v} for k, v in sorted(table.items()) if isinstance(v, dict)]
    cols = ["member", "temperature", "nll_before", "nll_after", "ece_before", "ece_after"]
    body = png_as_img_tag(Path(out_dir) / "reliability.png", "reliability diagram") if (
        Path(out_dir) / "reliability.png"
    ).exists() else ""
    body += _md_table_html(rows, cols)
    Path(page_path).write_text(html_page("Calibration: before / after", body), encoding="utf-8")
    if metrics_artifact is not None and rows:
        for key in ("nll_before", "nll_after", "ece_before", "ece_after"):
            vals = [float(r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            if vals:
                metrics_artifact.log_metric(f"mean_{key}", sum(vals) / len(vals))
    write_metadata_file(metrics_artifact)
    metadata.update({"work_uri": out})
    return json.dumps(result, default=str)


def _md_table_html(rows: list[dict], cols: list[str]) -> str:
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def run_ensemble(
    config_text: str, members: list[str], calibration_dir: str, groups_dir: str, work_root: str,
    out_dir: str, report_path: str, metadata: dict, metrics_artifact: Any = None,
) -> str:
    from finegrain.steps import ensemble as step

    cfg = config_from_text(config_text)
    out = step_uri(work_root, "ensemble")
    result = step.run(
        cfg, members=list(members), calibration=str(calibration_dir), out=out,
        groups=str(groups_dir) if groups_dir else None, parent_run_id=parent_run_id(work_root) or None,
    )
    mirror(out, out_dir)
    copy_text(step_uri(out, "report.md"), report_path)
    summary = json.loads(_read(out_dir, "ensemble.json") or "{}")
    if metrics_artifact is not None:
        for key in ("ensemble_oof_logloss", "uniform_oof_logloss"):
            if isinstance(summary.get(key), (int, float)):
                metrics_artifact.log_metric(key, float(summary[key]))
    write_metadata_file(metrics_artifact)
    metadata.update({"work_uri": out})
    return json.dumps(result, default=str)


def run_submit(
    config_text: str, ensemble_dir: str, calibration_dir: str, members: list[str], data_uri: str,
    work_root: str, out_dir: str, check_path: str, metadata: dict,
) -> str:
    from finegrain.steps import submit as step

    cfg = config_from_text(config_text)
    out = step_uri(work_root, "submit")
    parent = parent_run_id(work_root) or None
    result = step.run(cfg, ensemble=str(ensemble_dir), data=data_uri, out=out, parent_run_id=parent)
    storage.download_file(step_uri(out, "submission.csv"), out_dir)
    check = json.loads(storage.read_text(step_uri(out, "submission_check.json")))
    Path(check_path).write_text(_check_markdown(check, step_uri(out, "submission.csv")), encoding="utf-8")
    metadata.update({"work_uri": out, "submission_uri": step_uri(out, "submission.csv")})
    if cfg.tracking.enabled and cfg.tracking.register_model:
        from finegrain.tracking import pyfunc as serving

        result["registered_model"] = serving.register_ensemble(
            cfg, members=list(members), calibration_dir=calibration_dir, ensemble_dir=ensemble_dir,
            data_uri=data_uri, parent_run_id=parent,
        )
    return json.dumps(result, default=str)


def _check_markdown(check: dict, uri: str) -> str:
    lines = [f"# Submission check\n\n`{uri}`\n"]
    for key, value in check.items():
        if isinstance(value, dict):
            lines.append(f"- **{key}**: " + ", ".join(f"{k}={v}" for k, v in value.items()))
        else:
            lines.append(f"- **{key}**: {value}")
    return "\n".join(lines) + "\n"
