"""Helpers of the local-pipeline tests (tests/orchestration/test_local_run.py): reruns with overrides,
task counts, output paths, the parent run's status."""

import time
from pathlib import Path


def member_count(cfg) -> int:
    return len(cfg.train.backbones) * cfg.data.folds


def parent_status(cfg, run_id: str) -> str:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=cfg.tracking.uri).get_run(run_id).info.status


BOOKKEEPING = {"end-run": 1, "plan-run": 1, "start-run": 1}  # run by every pipeline run, never cached
AFTER_TRAIN = {"regroup": 1, "calibrate": 1, "ensemble": 1, "submit": 1, "register": 1}
CACHED = "reused: same inputs (kfp.local cache)"
TINY = "{name: test_efficientnet}"  # a second backbone: a tiny random-init timm test model, seconds to train


def with_overrides(cfg, *overrides: str):
    from finegrain.config import config_from_dict

    return config_from_dict(cfg.model_dump(mode="json"), list(overrides))


def rerun(cfg, dataset, out, *overrides: str, label: str = "") -> dict:
    from finegrain.orchestration.local import run_pipeline_locally

    started = time.monotonic()
    summary = run_pipeline_locally(with_overrides(cfg, *overrides), data=str(dataset), out=str(out))
    print(f"local pipeline run ({label or ', '.join(overrides) or 'unchanged'}): {time.monotonic() - started:.0f} s")
    return summary


def step_counts(counts: dict) -> dict:
    return {k: v for k, v in counts.items() if k not in BOOKKEEPING}


def output_path(summary: dict, task: str) -> Path:
    from finegrain.orchestration.layout import output_uri

    return Path(output_uri(summary["work_root"], task, summary["keys"][task]))
