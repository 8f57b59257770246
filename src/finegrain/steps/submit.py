"""Submit step: turn the ensemble's test probabilities into a validated competition submission.

    finegrain submit --ensemble out/ensemble --data data/sample --out out/submit

Reads `<ensemble>/test_probs.npz` (image_id, probs [n, C], classes [C]) and the dataset's test.csv /
sample_submission.csv; writes `submission.csv` (`ID` in test.csv order + the sample's exact columns, utf-8-sig,
rows sum to 1), `submission_check.json` (every validator check, row-sum range, alias handling) and its
Markdown twin for the Kubeflow UI, `summary.json` and `config.yaml`, then
logs both to MLflow. With `submit.endpoint` set, POSTs the file with the bearer token read from the
environment variable named by `submit.token_env` (the token is never logged or written anywhere, and goes
only to the endpoint itself: https, or http to localhost; redirects are refused). The step reports the HTTP
status, never the reply body (a server may echo the request, token included).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from finegrain import storage
from finegrain.config import Config, endpoint_problem
from finegrain.data.checks import dataset_aliases
from finegrain.data.layouts import read_dataset
from finegrain.posthoc.members import load_npz
from finegrain.posthoc.submission import (
    SubmissionError,
    build_submission,
    check_json,
    post_submission,
    validate_submission,
    write_submission,
)
from finegrain.steps.outputs import write_step_files
from finegrain.tracking import Tracker


def _test_probs(ensemble: str) -> tuple[np.ndarray, list[str], list[str]]:
    uri = ensemble if ensemble.endswith(".npz") else storage.join(ensemble, "test_probs.npz")
    arrays = load_npz(uri)
    missing = [k for k in ("image_id", "probs", "classes") if k not in arrays]
    if missing:
        raise SubmissionError(f"{uri}: missing array(s) {missing}; has {sorted(arrays)}")
    probs = np.asarray(arrays["probs"], dtype=np.float64)
    ids = [str(i) for i in arrays["image_id"]]
    classes = [str(c) for c in arrays["classes"]]
    if probs.ndim != 2 or probs.shape != (len(ids), len(classes)):
        raise SubmissionError(f"{uri}: probs shape {probs.shape}, expected [{len(ids)}, {len(classes)}]")
    return probs, ids, classes


def _token(cfg: Config) -> str:
    problem = endpoint_problem(cfg.submit.endpoint)
    if problem:  # the config validator refuses these too; a hand-built config must not get past here either
        raise SubmissionError(f"submit.endpoint: {problem}")
    token = os.environ.get(cfg.submit.token_env, "")
    if not token:
        raise SubmissionError(
            f"submit.endpoint is set but the environment variable {cfg.submit.token_env} (submit.token_env) "
            "holding the bearer token is missing or empty"
        )
    return token


def run(cfg: Config, ensemble: str, data: str, out: str, parent_run_id: str | None = None) -> dict:
    """Write and validate submission.csv (+ submission_check.json); POST it when submit.endpoint is set."""
    # Fail before any work if a POST was asked for but cannot be authenticated.
    token = _token(cfg) if cfg.submit.endpoint else None
    probs, ids, classes = _test_probs(ensemble)
    ds = read_dataset(data, layout=cfg.data.layout, extensions=cfg.data.extensions)
    if not ds.test_ids:  # preprocess refuses such a dataset; a file with no rows must never look submittable
        raise SubmissionError(f"{data}: no test images, so nothing to submit (add the images to predict)")
    columns = list(ds.submission_columns)
    aliases, _ = dataset_aliases(cfg.data.aliases, ds.classes)  # the pairs preprocess merged, by the same rule
    frame = build_submission(
        probs,
        classes,
        ids,
        columns,
        ds.column_to_class(),
        ds.test_ids,
        aliases=aliases,
        alias_mode=cfg.submit.alias_mode,
    )
    alias_columns = frame.attrs.get("aliases", {})
    summary: dict = {"submission": storage.join(out, "submission.csv"), "alias_mode": cfg.submit.alias_mode}
    with storage.output_dir(out) as local:
        local = Path(local)
        path = write_submission(frame, local / "submission.csv")
        alias_info = {
            "alias_mode": cfg.submit.alias_mode,
            "alias_columns": alias_columns,
            "declared_aliases": dict(cfg.data.aliases),
        }
        # Validate the file as written (what the scorer will read), not the in-memory frame.
        try:
            result = validate_submission(path, ["ID", *columns], ds.test_ids)
        except SubmissionError as exc:
            # Keep the evidence, never a file that looks submittable.
            path.unlink()
            failed = getattr(exc, "result", {"ok": False, "error": str(exc)})
            (local / "submission_check.json").write_text(check_json(failed, alias_info), encoding="utf-8")
            raise
        (local / "submission_check.json").write_text(check_json(result, alias_info), encoding="utf-8")
        (local / "submission_check.md").write_text(
            check_markdown({**result, **alias_info}, storage.join(out, "submission.csv")),
            encoding="utf-8",
        )
        summary.update(
            {
                "check": storage.join(out, "submission_check.json"),
                "n_rows": result["n_rows"],
                "n_columns": result["n_columns"],
                "row_sum_min": result["row_sum_min"],
                "row_sum_max": result["row_sum_max"],
                "alias_columns": len(alias_columns),
            }
        )
        if cfg.submit.endpoint:
            summary["post"] = post_submission(path, cfg.submit.endpoint, token)
        write_step_files(local, cfg, summary)
        with Tracker(cfg.tracking, "submit", parent_run_id=parent_run_id, local_dir=out) as tracker:
            tracker.log_params({"submit": cfg.submit.model_dump(), "ensemble": ensemble, "data": data})
            tracker.log_metrics(
                {
                    "n_rows": result["n_rows"],
                    "n_columns": result["n_columns"],
                    "row_sum_min": result["row_sum_min"],
                    "row_sum_max": result["row_sum_max"],
                }
            )
            tracker.log_artifact(path)
            tracker.log_artifact(local / "submission_check.json")
    return summary


def check_markdown(check: dict, uri: str) -> str:
    """The submission check as Markdown, for the Kubeflow UI."""
    lines = [f"# Submission check\n\n`{uri}`\n"]
    for key, value in check.items():
        if isinstance(value, dict):
            lines.append(f"- **{key}**: " + ", ".join(f"{k}={v}" for k, v in value.items()))
        else:
            lines.append(f"- **{key}**: {value}")
    return "\n".join(lines) + "\n"
