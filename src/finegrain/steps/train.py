"""Train step: one member = one (backbone, fold) model, resumable at every epoch.

    finegrain train --manifest out/preprocess --fold 0 --backbone efficientnet_lite0 --out out/train/efficientnet_lite0/fold0

Reads top to bottom: outputs already complete and made from the same settings and manifest (provenance)? ->
data (manifest, image cache, loaders) -> model, loss, optimizer, schedule, SWA/EMA -> resume from
`<out>/checkpoint.pt` when it was written for the same inputs -> epoch loop (`train_one_epoch`,
evaluate, checkpoint) -> final weights (SWA with recomputed BN stats, EMA, or last) -> the SAME weights are
evaluated, TTA-predicted and saved -> outputs, metrics.json last (it marks the member complete).
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import SWALR
from tqdm import tqdm

from finegrain import storage
from finegrain.config import Config, ConfigError
from finegrain.data.loader import (
    CachedImageDataset,
    build_image_cache,
    default_cache_root,
    fold_rows,
    load_manifest,
    make_loader,
    resolve_image_uris,
)
from finegrain.data.transforms import DeviceNormalizer, EvalPreset, TrainPreset
from finegrain.metrics import accuracy, log_loss, softmax
from finegrain.storage.locks import LOCK_NAME, LocalLock, S3Lock, hold_lock
from finegrain.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from finegrain.training.loop import autocast, predict, train_one_epoch, warmup_cosine
from finegrain.training.provenance import manifest_hash, member_provenance, mismatch
from finegrain.training.runtime import derived_seed, peak_memory_mb, pick_device, seed_everything
from finegrain.training.swa import (
    copy_non_bn_buffers,
    make_ema,
    make_swa,
    recompute_bn_stats,
    swa_start_epoch,
)

EpochHook = Callable[[int, dict], None]
Lock = LocalLock | S3Lock
OUTPUT_NAMES = ("model.pt", "oof.npz", "test.npz", "config.yaml")  # and metrics.json, written last


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
    """Train member (backbone, fold) and write model.pt, oof.npz, test.npz, metrics.json, config.yaml to `out`.

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
        return _train(cfg, table, class_info, fold, backbone, out, provenance, lock, parent_run_id, on_epoch_end)


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
    cfg: Config,
    table: pd.DataFrame,
    class_info: dict,
    fold: int,
    backbone: str,
    out: str,
    provenance: dict,
    lock: Lock,
    parent_run_id: str | None,
    on_epoch_end: EpochHook | None,
) -> dict:
    tc = cfg.train
    spec = tc.backbone(backbone)
    image_size, batch_size, lr = spec.image_size or tc.image_size, spec.batch_size or tc.batch_size, spec.lr or tc.lr
    device = pick_device(tc.device)
    seed_everything(tc.seed, tc.deterministic)
    max_steps = tc.max_steps_per_epoch

    # ---- data: manifest rows -> decoded-once cache -> datasets -> loaders
    classes = list(class_info["classes"])
    train_rows, val_rows, test_rows = fold_rows(table, fold)
    test_ok = test_rows[test_rows["status"] != "corrupt"]  # unreadable test images get uniform predictions

    from finegrain.models import build_loss, build_model

    model = build_model(spec, tc.head, num_classes=len(classes)).to(device)
    if tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    mean, std = list(model.data_config["mean"]), list(model.data_config["std"])

    rows = pd.concat([train_rows, val_rows, test_ok])
    cache = build_image_cache(
        resolve_image_uris(rows["path"], cfg.data.uri),
        short_side=round(tc.cache_scale * image_size),
        cache_root=default_cache_root(tc.cache_dir),
        fingerprints=rows["sha256"].astype(str) if "sha256" in rows else None,
        workers=max(2, tc.num_workers),
    )
    n_tr, n_val = len(train_rows), len(val_rows)
    train_set = CachedImageDataset(cache, range(n_tr), train_rows["class_index"], TrainPreset(image_size, mean, std))
    eval_preset = EvalPreset(image_size, mean, std, resize=tc.eval_resize)
    val_set = CachedImageDataset(cache, range(n_tr, n_tr + n_val), val_rows["class_index"], eval_preset)
    test_set = CachedImageDataset(cache, range(n_tr + n_val, len(rows)), None, eval_preset)
    pin = device.type == "cuda"
    train_loader = make_loader(train_set, batch_size, tc.seed, True, tc.num_workers, pin)
    val_loader = make_loader(val_set, batch_size, tc.seed, False, tc.num_workers, pin)
    test_loader = make_loader(test_set, batch_size, tc.seed, False, tc.num_workers, pin)
    prepare = DeviceNormalizer(mean, std, device, tc.channels_last)

    # ---- optimisation: AdamW + per-step warmup/cosine; SWALR takes over (and the cosine stops) at swa_start
    loss_fn = build_loss(tc.loss)
    optimizer = torch.optim.AdamW(model.param_groups(lr, tc.weight_decay), lr=lr, weight_decay=tc.weight_decay)
    steps_per_epoch = min(len(train_loader), max_steps or len(train_loader))
    scheduler = LambdaLR(
        optimizer, warmup_cosine(tc.epochs * steps_per_epoch, round(tc.warmup_epochs * steps_per_epoch))
    )
    swa_start = swa_start_epoch(tc.epochs, tc.swa.start_epoch) if tc.swa.enabled else None
    swa_model = make_swa(model) if swa_start is not None else None
    swa_scheduler: SWALR | None = None
    ema_model = make_ema(model, tc.ema_decay) if tc.ema else None
    embed = torch.compile(model.embed) if tc.compile else model.embed
    mix = tc.mix.model_dump() if tc.mix.prob > 0 else None

    # ---- resume
    checkpoint_uri = storage.join(out, "checkpoint.pt")
    start_epoch, global_step, history = 0, 0, []
    state = load_checkpoint(checkpoint_uri)
    why = mismatch(state.get("provenance"), provenance) if state is not None else None
    if why is not None:
        print(f"{backbone}/fold{fold}: not resuming from {checkpoint_uri}, written for other inputs ({why}); "
              "training from scratch", flush=True)  # fmt: skip
        storage.delete(checkpoint_uri)
        storage.delete(storage.join(out, "tracking"))  # that attempt's MLflow run id and metric log
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if swa_model is not None:
            swa_model.load_state_dict(state["swa_model"])
        if state.get("swa_scheduler") is not None:
            swa_scheduler = SWALR(optimizer, swa_lr=tc.swa.lr, anneal_epochs=tc.swa.anneal_epochs)
            swa_scheduler.load_state_dict(state["swa_scheduler"])
        if ema_model is not None:
            ema_model.load_state_dict(state["ema_model"])
        set_rng_state(state["rng"])
        start_epoch, global_step, history = state["epoch"] + 1, state["global_step"], list(state["history"])
        print(f"resuming {backbone}/fold{fold} from {checkpoint_uri} after epoch {state['epoch']}")

    with ExitStack() as stack:
        tracker, tracking_dir = _open_tracker(stack, cfg, backbone, fold, out, parent_run_id)
        tracker.log_params(cfg.model_dump(mode="json"))  # nested -> dotted keys; same values again on resume

        # ---- epochs
        for epoch in range(start_epoch, tc.epochs):
            train_loader.sampler.set_epoch(epoch)
            torch.manual_seed(derived_seed(tc.seed, epoch, "torch"))  # dropout/drop-path: f(seed, epoch)
            in_swa = swa_start is not None and epoch >= swa_start
            if in_swa and swa_scheduler is None:
                swa_scheduler = SWALR(optimizer, swa_lr=tc.swa.lr, anneal_epochs=tc.swa.anneal_epochs)
            bar = tqdm(total=steps_per_epoch, desc=f"{backbone}/fold{fold} epoch {epoch + 1}/{tc.epochs}", leave=False)
            stats = train_one_epoch(
                model, embed, loss_fn, optimizer, None if in_swa else scheduler, train_loader, prepare,
                amp=tc.amp, grad_clip=tc.grad_clip, mix=mix,
                mix_generator=torch.Generator().manual_seed(derived_seed(tc.seed, epoch, "mix")),
                max_steps=max_steps, ema=ema_model,
                progress=lambda step, loss, bar=bar: (bar.update(1), step % 20 or bar.set_postfix(loss=f"{float(loss):.3f}")),
            )  # fmt: skip
            bar.close()
            if in_swa:
                swa_model.update_parameters(model)
                swa_scheduler.step()
            global_step += stats["steps"]
            watched = ema_model.module if ema_model is not None else model
            val_logits, _ = predict(watched, val_loader, prepare, amp=tc.amp)
            record = {
                "epoch": epoch, "train_loss": stats["train_loss"], "lr": stats["lr"], "img_per_s": stats["img_per_s"],
                "train_images": stats["images"], "train_seconds": stats["seconds"],
                "val_logloss": log_loss(val_rows["class_index"].to_numpy(), softmax(val_logits)),
                "val_accuracy": accuracy(val_rows["class_index"].to_numpy(), val_logits),
            }  # fmt: skip
            history.append(record)
            print(json.dumps(record))
            tracker.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=epoch)
            lock.check()  # a writer that lost its lock must not overwrite the new holder's checkpoint
            save_checkpoint(checkpoint_uri, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "swa_model": swa_model.state_dict() if swa_model is not None else None,
                "swa_scheduler": swa_scheduler.state_dict() if swa_scheduler is not None else None,
                "ema_model": ema_model.state_dict() if ema_model is not None else None,
                "scaler": None,  # bf16 autocast needs no loss scaling
                "epoch": epoch, "global_step": global_step, "history": history, "rng": rng_state(),
                "config": cfg.model_dump(mode="json"), "provenance": provenance,
            })  # fmt: skip
            _sync_tracking_dir(tracking_dir, out)
            if on_epoch_end is not None:
                on_epoch_end(epoch, record)

        # ---- final weights: what is evaluated below is exactly what is saved
        if swa_model is not None:
            final, weights = swa_model.module, "swa"
            copy_non_bn_buffers(model, final)
            train_loader.sampler.set_epoch(tc.epochs)  # a fresh, still seeded, pass for the BN statistics
            with autocast(device, tc.amp):
                recompute_bn_stats(final, train_loader, prepare, max_steps=max_steps)
        elif ema_model is not None:
            final, weights = ema_model.module, "ema"
        else:
            final, weights = model, "last"
        final_embed = torch.compile(final.embed) if tc.compile else final.embed
        val_labels = val_rows["class_index"].to_numpy().astype(np.int64)
        oof_logits, oof_emb = predict(
            final, val_loader, prepare, amp=tc.amp, views=tc.tta, embed=final_embed, with_embeddings=True
        )
        test_logits = np.zeros((len(test_rows), len(classes)), np.float32)
        if len(test_ok):
            ok_logits, _ = predict(final, test_loader, prepare, amp=tc.amp, views=tc.tta, embed=final_embed)
            test_logits[np.flatnonzero((test_rows["status"] != "corrupt").to_numpy())] = ok_logits

        train_seconds = sum(h["train_seconds"] for h in history)
        metrics = {
            "backbone": backbone, "fold": fold, "weights": weights,
            "val_logloss": log_loss(val_labels, softmax(oof_logits), classes, class_info["aliases"]),
            "val_accuracy": accuracy(val_labels, oof_logits),
            "epochs": tc.epochs, "global_step": global_step,
            "train_img_per_s": sum(h["train_images"] for h in history) / max(train_seconds, 1e-9),
            "peak_memory_mb": peak_memory_mb(device), "device": str(device),
            "image_size": image_size, "batch_size": batch_size, "lr": lr, "tta": list(tc.tta),
            "n_train": n_tr, "n_val": n_val, "n_test": len(test_rows), "n_test_unreadable": len(test_rows) - len(test_ok),
            "history": history, "mlflow_run_id": getattr(tracker, "run_id", None), "provenance": provenance,
        }  # fmt: skip
        tracker.log_metrics({"final_val_logloss": metrics["val_logloss"], "final_val_accuracy": metrics["val_accuracy"]}, step=tc.epochs)
        files = {
            "oof.npz": _npz(image_id=val_rows["image_id"].astype(str).to_numpy(), logits=oof_logits,
                            labels=val_labels, embeddings=oof_emb, classes=np.array(classes)),
            "test.npz": _npz(image_id=test_rows["image_id"].astype(str).to_numpy(), logits=test_logits,
                             classes=np.array(classes)),
            "model.pt": _model_bytes(final, cfg, classes, backbone, fold, weights, mean, std, image_size),
            "config.yaml": cfg.to_yaml().encode(),
            "metrics.json": json.dumps(metrics, indent=2, ensure_ascii=False).encode(),
        }  # fmt: skip
        lock.check()
        # A registered model carries every member's weights (finegrain.tracking.registry): a copy in the member
        # run too would store each model.pt twice in MLflow. The work URI keeps it either way.
        _publish(files, out, tracker, 0.0 if cfg.tracking.register_model else tc.log_model_max_mb)
    storage.delete(checkpoint_uri)  # the member is complete; metrics.json (written last) now answers retries
    return metrics


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    # Strings as fixed-width unicode, never object arrays: the files must load with allow_pickle=False.
    arrays = {k: np.asarray(v).astype(str) if np.asarray(v).dtype == object else np.asarray(v) for k, v in arrays.items()}
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _model_bytes(model, cfg: Config, classes, backbone, fold, weights, mean, std, image_size) -> bytes:
    buffer = io.BytesIO()
    torch.save(
        {
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "config": cfg.model_dump(mode="json"),
            "classes": list(classes),
            "backbone": backbone,
            "fold": int(fold),
            "weights": weights,
            "num_classes": len(classes),
            "embedding_dim": int(model.embedding_dim),
            "image_size": int(image_size),
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
        },
        buffer,
    )
    return buffer.getvalue()


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


def _open_tracker(stack: ExitStack, cfg: Config, backbone: str, fold: int, out: str, parent_run_id: str | None):
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
            cfg.tracking,
            f"{backbone}/fold{fold}",
            parent_run_id=parent_run_id,
            tags={"backbone": backbone, "fold": str(fold), "step": "train"},
            local_dir=local,
            resume=True,
        )
    )
    return tracker, local


def _sync_tracking_dir(local: Path, out: str) -> None:
    if storage.is_s3(out) and local.exists():
        storage.upload_dir(local, storage.join(out, "tracking"))
