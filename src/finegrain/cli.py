"""`finegrain <step> ...`: the command line over the step functions in `finegrain.steps`.

Every command takes `--config FILE` and repeated `--set key.path=value` overrides (value parsed as YAML).
Expected failures end in one line on stderr, never a traceback: exit 2 for what the user gave (config, files,
storage: a missing or unreadable file, an S3 error, an output locked by another writer), exit 1 for a step
that ran and refused its input.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import List, Optional

import typer

from finegrain.cli_errors import reported_errors
from finegrain.config import Config

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

ConfigOpt = typer.Option("configs/sample.yaml", "--config", "-c", help="YAML config file (local or s3://).")
SetOpt = typer.Option(None, "--set", "-s", help="Override: key.path=value (YAML value). Repeatable.")


def _config(config: str, overrides: Optional[List[str]], backbones: bool = False) -> Config:
    """The validated config; with `backbones`, also every backbone's timm name and weights (for the commands
    that lead to training: a bad one fails here, before any step works)."""
    from finegrain.orchestration.plan import config_from_file

    with reported_errors():
        cfg = config_from_file(config, overrides or [])
        if backbones:
            from finegrain.models.weight_sources import check_backbones

            for note in check_backbones(cfg.train):
                typer.echo(f"warning: {note}", err=True)
    return cfg


def _print(result: object) -> None:
    typer.echo(json.dumps(result, indent=2, ensure_ascii=False, default=str))


# Steps that hold `<out>/.finegrain.lock` themselves (per member, in their KFP component too); a second lock on
# the same file from this process would be refused as another writer.
SELF_LOCKING = ("train",)
# Steps whose --out is a file, not a directory: it is written whole by one rename, so there is nothing to lock.
FILE_OUTPUT = ("predict",)


def _run_step(step: str, config: str, overrides: Optional[List[str]], **kwargs) -> None:
    """Validate the config first (a typo fails before torch is imported), then run `finegrain.steps.<step>`
    holding `<out>/.finegrain.lock`, so a second command writing the same --out fails naming the first.

    A `data=None` keyword falls back to the config's `data.uri`.
    """
    import importlib

    from finegrain import storage
    from finegrain.storage.locks import LOCK_NAME, hold_lock

    cfg = _config(config, overrides, backbones=step in ("preprocess", "train"))
    if "data" in kwargs and kwargs["data"] is None:
        kwargs["data"] = cfg.data.uri
    out = kwargs["out"]
    with reported_errors():
        module = importlib.import_module(f"finegrain.steps.{step}")
        with contextlib.ExitStack() as held:
            if step not in SELF_LOCKING + FILE_OUTPUT:
                held.enter_context(hold_lock(storage.join(out, LOCK_NAME), f"finegrain {step} --out {out}"))
            _print(module.run(cfg, **kwargs))


@app.command("make-sample")
def make_sample(
    out: str = typer.Option("data/sample", "--out", help="Directory to write the sample dataset into."),
    seed: int = typer.Option(0, help="Generator seed (the bundled data uses 0)."),
) -> None:
    """Generate the small synthetic fine-grained dataset (Hecto layout) with planted problems and an answer key."""
    from finegrain.sample.generate import make_sample as _make

    with reported_errors():
        key = _make(out, seed=seed)
    # The whole answer key (per-class counts, what was planted where) is in <out>/answer_key.json; the terminal
    # gets the totals, a few lines in `make run`'s output rather than one per class.
    counts = key.get("counts", {})
    _print(
        {
            "out": out,
            "answer_key": f"{out}/answer_key.json",
            "classes": len(key.get("classes", [])),
            "train_files": counts.get("train_files"),
            "test_files": counts.get("test_files"),
        }
    )


@app.command()
def preprocess(
    data: str = typer.Option(None, "--data", help="Dataset URI (default: data.uri from the config)."),
    out: str = typer.Option(..., "--out", help="Output URI for manifest.parquet, classes.json, report.md."),
    config: str = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
) -> None:
    """Validate images, remove duplicates, merge identical classes, assign folds."""
    _run_step("preprocess", config, set_, data=data, out=out)


@app.command()
def train(
    manifest: str = typer.Option(..., "--manifest", help="Preprocess output URI (or its manifest.parquet)."),
    fold: int = typer.Option(..., "--fold", help="Validation fold of this member."),
    backbone: str = typer.Option(..., "--backbone", help="Backbone name from train.backbones."),
    out: str = typer.Option(..., "--out", help="Output URI for model.pt, oof.npz, test.npz, metrics.json."),
    parent_run_id: str = typer.Option(None, "--parent-run-id", help="MLflow run to nest this member under."),
    config: str = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
) -> None:
    """Train one (backbone, fold) member; resumes from its last checkpoint if one exists."""
    _run_step(
        "train",
        config,
        set_,
        manifest=manifest,
        fold=fold,
        backbone=backbone,
        out=out,
        parent_run_id=parent_run_id,
    )


@app.command()
def regroup(
    members: List[str] = typer.Option(..., "--members", help="Train output URIs (repeat the option)."),
    out: str = typer.Option(..., "--out"),
    config: str = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
) -> None:
    """t-SNE + agglomerative clustering of out-of-fold embeddings into groups of confusable classes."""
    _run_step("regroup", config, set_, members=members, out=out)


@app.command()
def calibrate(
    members: List[str] = typer.Option(..., "--members", help="Train output URIs (repeat the option)."),
    out: str = typer.Option(..., "--out"),
    config: str = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
) -> None:
    """Fit one temperature per member on its out-of-fold logits."""
    _run_step("calibrate", config, set_, members=members, out=out)


@app.command()
def ensemble(
    members: List[str] = typer.Option(..., "--members", help="Train output URIs (repeat the option)."),
    calibration: str = typer.Option(..., "--calibration", help="Calibrate output URI."),
    out: str = typer.Option(..., "--out"),
    groups: str = typer.Option(None, "--groups", help="Regroup output URI (for hierarchical inference)."),
    manifest: str = typer.Option(
        None, "--manifest", help="Preprocess output URI (thumbnails on the error-analysis page)."
    ),
    config: str = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
) -> None:
    """Weighted soft voting of calibrated members (optionally hierarchical over regroup groups)."""
    _run_step(
        "ensemble", config, set_, members=members, calibration=calibration, out=out, groups=groups,
        manifest=manifest,
    )


@app.command()
def submit(
    ensemble: str = typer.Option(..., "--ensemble", help="Ensemble output URI (holds test_probs.npz)."),
    data: str = typer.Option(None, "--data", help="Dataset URI (test.csv, sample_submission.csv)."),
    out: str = typer.Option(..., "--out"),
    config: str = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
) -> None:
    """Write and validate submission.csv in the sample submission's exact column order."""
    _run_step("submit", config, set_, ensemble=ensemble, data=data, out=out)


@app.command()
def register(
    members: List[str] = typer.Option(..., "--members", help="Train output URIs, each holding model.pt (repeat)."),
    calibration: str = typer.Option(..., "--calibration", help="Calibrate output URI."),
    ensemble: str = typer.Option(..., "--ensemble", help="Ensemble output URI."),
    data: str = typer.Option(None, "--data", help="Dataset URI (for the submission columns)."),
    out: str = typer.Option(..., "--out"),
    parent_run_id: str = typer.Option(None, "--parent-run-id", help="MLflow run to log the model under."),
    config: str = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
) -> None:
    """Log the calibrated ensemble as an MLflow pyfunc model and register it as tracking.register_model."""
    _run_step(
        "register", config, set_, members=members, calibration=calibration, ensemble=ensemble, data=data,
        out=out, parent_run_id=parent_run_id,
    )


@app.command()
def predict(
    images: str = typer.Option(..., "--images", help="Directory, s3:// prefix or file: every image under it."),
    out: str = typer.Option("predictions.csv", "--out", help="CSV to write (local or s3://); errors beside it."),
    model: str = typer.Option(
        None, "--model", help="Model URI (default: models:/<tracking.register_model>@champion)."
    ),
    config: str = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
) -> None:
    """Score new images with a registered model: ID + submission columns; unreadable images listed beside."""
    _run_step("predict", config, set_, model=model, images=images, out=out)


@app.command()
def run(
    data: str = typer.Option(
        None, "--data", help="Dataset URI (default: data.uri; the bundled sample is generated)."
    ),
    out: str = typer.Option("runs/sample", "--out", help="Where every step's outputs go."),
    runner: str = typer.Option(
        "subprocess", "--runner", help="subprocess (this Python) or docker (train in pipeline.base_image, every other step in pipeline.cpu_image)."
    ),
    config: str = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
) -> None:
    """Run the whole pipeline on this machine with kfp.local (no cluster, no services)."""
    cfg = _config(config, set_, backbones=True)
    from finegrain import storage
    from finegrain.data.checks import check_dataset
    from finegrain.data.layouts import read_dataset
    from finegrain.orchestration.local import prepare_data, run_pipeline_locally
    from finegrain.storage.locks import LOCK_NAME, hold_lock

    # kfp.local has already printed a failing task's own traceback; this adds the one-line reason.
    with reported_errors(refusals=(ValueError, RuntimeError)):  # a failed kfp.local task is a RuntimeError
        # One `finegrain run` per --out: two would interleave every step's outputs (each member also has its own).
        with hold_lock(storage.join(out, LOCK_NAME), f"finegrain run --out {out}"):
            # The dataset's shape is checked here, in one line, rather than inside a task's traceback.
            data = prepare_data(cfg, data or cfg.data.uri)
            ds = read_dataset(data, layout=cfg.data.layout, extensions=cfg.data.extensions)
            for note in check_dataset(ds, cfg.data.folds, cfg.data.aliases):
                typer.echo(f"warning: {note}", err=True)
            summary = run_pipeline_locally(cfg, data=data, out=out, runner=runner)
    if not summary.get("submission_valid"):
        typer.echo("error: the pipeline finished but the submission did not validate", err=True)
        raise typer.Exit(1)


@app.command()
def gc(
    out: str = typer.Option(
        ..., "--out", help="A `finegrain run --out` directory, or a work root (pipeline.work_root; or s3://)."
    ),
    keep: int = typer.Option(1, "--keep", min=1, help="Keep the outputs the latest N runs use."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be freed; delete nothing."),
    config: str = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
) -> None:
    """Delete task outputs that none of the latest N runs uses (never one in use), and say what was freed."""
    _config(config, set_)  # the storage settings (S3 retries)
    from finegrain import storage
    from finegrain.orchestration import gc as collector
    from finegrain.storage.locks import LOCK_NAME, hold_lock

    work, run_dir = collector.work_root_of(out)
    with reported_errors():
        with contextlib.ExitStack() as stack:
            if run_dir is not None:  # no `finegrain run` on it meanwhile: none of its runs is in flight
                stack.enter_context(hold_lock(storage.join(out, LOCK_NAME), f"finegrain gc --out {out}"))
            in_flight = run_dir is None
            result = collector.collect_garbage(work, keep, in_flight_possible=in_flight, dry_run=dry_run)
            if run_dir is not None:
                extra = collector.collect_kfp_local(run_dir / ".kfp", dry_run=dry_run)
                result["freed"] += extra
                result["bytes"] += sum(f["bytes"] for f in extra)
    typer.echo(collector.format_freed(result, dry_run))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
