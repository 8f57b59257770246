"""What every step writes beside its own outputs, inside its atomic output block (storage.output_dir).

`config.yaml` (the resolved config the step ran with) and `summary.json` (what the step returns: the CLI prints
it, the KFP component returns it, `finegrain run` reads it) are written by the step itself, so a step run by
hand leaves the same files as the pipeline's task.
"""

from __future__ import annotations

import json
from pathlib import Path

from finegrain.config import Config

SUMMARY = "summary.json"
CONFIG = "config.yaml"


def write_step_files(local: Path, cfg: Config, summary: dict) -> None:
    (Path(local) / CONFIG).write_text(cfg.to_yaml(), encoding="utf-8")
    (Path(local) / SUMMARY).write_text(
        json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )


def scalars(d: dict) -> dict[str, float]:
    """The numeric top-level entries of a summary (what goes to MLflow metrics and KFP Metrics)."""
    return {k: float(v) for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
