"""Where a run's outputs live: the one place that names the step and member directories under a work root.

The KFP adapter (in pods), the local runner (`finegrain run`, its `<out>/<step>` links and its summary) and the
command line all lay outputs out through these functions, so the layout is written down once:

    <work_root>/preprocess/                  manifest.parquet, classes.json, report.md, summary.json, config.yaml
    <work_root>/train/<backbone>/fold<k>/    model.pt, oof.npz, test.npz, metrics.json, config.yaml
    <work_root>/regroup/ calibrate/ ensemble/ submit/ register/
    <work_root>/mlflow_parent_run.json       the pipeline's parent MLflow run (see orchestration.parent_run)
"""

from __future__ import annotations

from finegrain import storage

# In pipeline order; `train` holds one directory per member.
STEPS = ("preprocess", "train", "regroup", "calibrate", "ensemble", "submit", "register")


def step_uri(work_root: str, step: str) -> str:
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; steps are {', '.join(STEPS)}")
    return storage.join(work_root, step)


def member_key(backbone: str, fold: int) -> str:
    """A member's name everywhere (metrics.json, calibration.json, ensemble weights): `<backbone>/fold<k>`."""
    return f"{backbone}/fold{int(fold)}"


def member_uri(work_root: str, backbone: str, fold: int) -> str:
    return storage.join(step_uri(work_root, "train"), backbone, f"fold{int(fold)}")


def work_file(work_root: str, name: str) -> str:
    """A run-level file that belongs to no step (the parent run record)."""
    return storage.join(work_root, name)
