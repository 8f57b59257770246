"""Train step: one member = one (backbone, fold) model, resumable at every epoch.

    finegrain train --manifest out/preprocess --fold 0 --backbone efficientnet_lite0 --out out/train/efficientnet_lite0/fold0

Reads top to bottom: outputs already complete and made from the same settings and manifest (provenance)? ->
build (`training.build`: data, model, loss, optimizer, schedule, SWA/EMA) -> resume from `<out>/checkpoint.pt`
when it was written for the same inputs (`training.checkpoint`) -> epoch loop (`training.epoch`: train,
evaluate; then checkpoint) -> finish (`training.finish`: final weights SWA/EMA/last; the SAME weights are
evaluated, TTA-predicted and saved) -> outputs, metrics.json last (it marks the member complete).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from finegrain import storage
from finegrain.config import Config, ConfigError
from finegrain.data.loader import load_manifest
from finegrain.metrics import softmax
from finegrain.steps.error_page import error_page
from finegrain.storage.locks import LOCK_NAME, LocalLock, S3Lock, hold_lock
from finegrain.training.build import TrainSetup, build_member
from finegrain.training.checkpoint import checkpoint_state, resume, save_checkpoint
from finegrain.training.epoch import run_epoch
from finegrain.training.finish import MemberResult, finish, member_files, member_metrics
from finegrain.training.params import member_params
from finegrain.training.provenance import manifest_hash, member_provenance, mismatch

ERRORS_PAGE = "errors.html"  # the validation fold's error analysis (the KFP UI's page beyond 40 classes)

EpochHook = Callable[[int, dict], None]
Lock = LocalLock | S3Lock
OUTPUT_NAMES = ("model.pt", "oof.npz", "test.npz", "confusion.json", ERRORS_PAGE, "config.yaml")  # metrics.json last


def run(
    cfg: Config,
    manifest: str,
    fold: int,
    backbone: str,
    out: str,
    parent_run_id: str | None = None,
    *,
    on_epoch_end: EpochHook | None = None,
) -> dict:
    """Train member (backbone, fold) and write model.pt, oof.npz, test.npz, confusion.json, errors.html,
    config.yaml and metrics.json to `out`.

    A finished member already in `out` is returned as it is when it was made from the same train settings and
    manifest content (its recorded provenance); otherwise it is removed and the member retrained.
    on_epoch_end: internal hook called as `hook(epoch, record)` after each epoch's checkpoint is written.
    """
    if cfg.train.ema and cfg.train.swa.enabled:
        raise ConfigError("train.ema and train.swa.enabled are both on: the final weights must be one average")
    table, class_info = load_manifest(manifest)
    provenance = member_provenance(cfg, backbone, fold, manifest_hash(table, class_info))
    # One writer per member: a second `finegrain train` (or pod) on the same --out fails naming the first.
    with hold_lock(storage.join(out, LOCK_NAME), f"train {backbone}/fold{fold}") as lock:
        finished = _finished_member(out, provenance, f"{backbone}/fold{fold}")
        if finished is not None:
            return finished
        setup = build_member(cfg, table, class_info, fold, backbone)
        return _train(setup, out, provenance, lock, parent_run_id, on_epoch_end)


def _finished_member(out: str, provenance: dict, label: str) -> dict | None:
    """The metrics of a finished member made from the same inputs; one made from other inputs is removed."""
    metrics_uri = storage.join(out, "metrics.json")
    if not storage.exists(metrics_uri):
        return None
    try:
        metrics = json.loads(storage.read_text(metrics_uri))
        why = mismatch(metrics.get("provenance") if isinstance(metrics, dict) else None, provenance)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        why = f"unreadable metrics.json ({exc})"
    if why is None:
        print(f"{label}: reusing the finished member in {out} (same settings and manifest)", flush=True)
        return metrics
    print(f"{label}: {out} holds a member made from other inputs ({why}); retraining from scratch", flush=True)
    # metrics.json first: from then on no reader takes what is left for a finished member.
    for name in ("metrics.json", *OUTPUT_NAMES, "checkpoint.pt", "tracking"):
        storage.delete(storage.join(out, name))
    return None


def _train(
    setup: TrainSetup, out: str, provenance: dict, lock: Lock, parent_run_id: str | None, hook: EpochHook | None
) -> dict:
    """Resume, train and finish a built member; publish its outputs to `out`, metrics.json last."""
    cfg, training, checkpoint_uri = setup.cfg, setup.training, storage.join(out, "checkpoint.pt")
    # A checkpoint of other inputs goes, and with it that attempt's MLflow run id and metric log.
    resume(training, checkpoint_uri, provenance, setup.label, discard_with_it=[storage.join(out, "tracking")])
    with contextlib.ExitStack() as stack:
        tracker, tracking_dir = _open_tracker(stack, setup, out, parent_run_id)
        tracker.log_params(member_params(setup, provenance["manifest"]))  # same values again on resume
        for epoch in range(training.start_epoch, cfg.train.epochs):
            record = run_epoch(setup, epoch)
            tracker.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=epoch)
            lock.check()  # a writer that lost its lock must not overwrite the new holder's checkpoint
            save_checkpoint(checkpoint_uri, checkpoint_state(training, epoch, cfg.model_dump(mode="json"), provenance))
            _sync_tracking_dir(tracking_dir, out)
            if hook is not None:
                hook(epoch, record)

        result = finish(setup)
        metrics = member_metrics(setup, result, provenance, getattr(tracker, "run_id", None))
        final = {f"final_{k}": metrics[k] for k in ("val_logloss", "val_logloss_raw", "val_temperature", "val_accuracy")}
        tracker.log_metrics(final, step=cfg.train.epochs)
        files = member_files(setup, result, metrics, pages={ERRORS_PAGE: _errors_page(setup, result)})
        lock.check()
        # A registered model carries every member's weights (finegrain.tracking.registry): a copy in the member
        # run too would store each model.pt twice in MLflow. The work URI keeps it either way.
        _publish(files, out, tracker, 0.0 if cfg.tracking.register_model else cfg.train.log_model_max_mb)
    storage.delete(checkpoint_uri)  # the member is complete; metrics.json (written last) now answers retries
    return metrics


def _errors_page(setup: TrainSetup, result: MemberResult) -> bytes:
    """errors.html: where this member's final weights go wrong on its validation fold, with thumbnails."""
    rows = setup.data.val_rows
    ids = rows["image_id"].astype(str).tolist()
    page, _ = error_page(
        softmax(result.oof_logits), result.val_labels, ids, setup.data.classes,
        f"{setup.label}: validation fold {setup.fold} (final {result.weights} weights, TTA)",
        aliases=setup.data.aliases, paths=dict(zip(ids, rows["path"].astype(str))),
        title=f"Error analysis: {setup.label} (validation fold)",
    )
    return page.encode("utf-8")


def _publish(files: dict[str, bytes], out: str, tracker, log_model_max_mb: float) -> None:
    """Write the outputs (metrics.json last: it marks the member complete) and log them to MLflow."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            local = Path(tmp, name)
            local.write_bytes(data)
            if name != "metrics.json":
                storage.upload_file(local, storage.join(out, name))
            if name != "model.pt" or len(data) <= log_model_max_mb * 2**20:
                tracker.log_artifact(str(local))
        storage.upload_file(Path(tmp, "metrics.json"), storage.join(out, "metrics.json"))


def _open_tracker(stack: contextlib.ExitStack, setup: TrainSetup, out: str, parent_run_id: str | None):
    """MLflow run `<backbone>/fold<k>`; its local dir (run id + metrics.jsonl) lives in `out/tracking/`."""
    from finegrain.tracking import Tracker

    tracking_uri = storage.join(out, "tracking")
    if storage.is_s3(out):
        local = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        with contextlib.suppress(FileNotFoundError):  # the run id of an interrupted attempt, to resume that run
            storage.download_dir(tracking_uri, local)
    else:
        local = Path(tracking_uri)
    stack.callback(_sync_tracking_dir, local, out)  # registered first so it runs after the tracker has flushed
    tracker = stack.enter_context(
        Tracker(
            setup.cfg.tracking,
            setup.label,
            parent_run_id=parent_run_id,
            tags={"backbone": setup.backbone, "fold": str(setup.fold), "step": "train"},
            local_dir=local,
            resume=True,
            system_metrics=True,  # CPU, memory, GPU and network of the pod, beside the training curves
        )
    )
    return tracker, local


def _sync_tracking_dir(local: Path, out: str) -> None:
    if storage.is_s3(out) and local.exists():
        storage.upload_dir(local, storage.join(out, "tracking"))
