"""Finish phase of a member: choose the final weights, then evaluate, TTA-predict and save exactly those.

    final weights: SWA (BN statistics recomputed on a fresh training pass), else EMA, else the last weights
    -> out-of-fold logits + embeddings and test logits, averaged over the TTA views
    -> metrics -> the member's files (model.pt, oof.npz, test.npz, config.yaml, then metrics.json)
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from finegrain.metrics import accuracy, log_loss, softmax, tempered_log_loss
from finegrain.training.build import TrainSetup
from finegrain.training.loop import autocast, predict
from finegrain.training.runtime import peak_memory_mb
from finegrain.training.swa import copy_non_bn_buffers, recompute_bn_stats


@dataclass
class MemberResult:
    """The final weights and what they predict: out-of-fold (validation rows) and test, in manifest order."""

    model: nn.Module
    weights: str  # "swa", "ema" or "last"
    val_labels: np.ndarray
    oof_logits: np.ndarray
    oof_embeddings: np.ndarray
    test_logits: np.ndarray  # zeros (uniform probabilities) for unreadable test images


def finish(setup: TrainSetup) -> MemberResult:
    """The final weights of a trained member, evaluated and TTA-predicted on validation and test."""
    tc, data = setup.cfg.train, setup.data
    final, weights = final_weights(setup)
    final_embed = torch.compile(final.embed) if tc.compile else final.embed
    val_labels = data.val_rows["class_index"].to_numpy().astype(np.int64)
    oof_logits, oof_emb = predict(
        final, data.val_loader, data.prepare, amp=tc.amp, views=tc.tta, embed=final_embed, with_embeddings=True
    )
    test_logits = np.zeros((len(data.test_rows), len(data.classes)), np.float32)
    if len(data.test_ok):
        ok_logits, _ = predict(final, data.test_loader, data.prepare, amp=tc.amp, views=tc.tta, embed=final_embed)
        test_logits[np.flatnonzero((data.test_rows["status"] != "corrupt").to_numpy())] = ok_logits
    return MemberResult(final, weights, val_labels, oof_logits, oof_emb, test_logits)


def final_weights(setup: TrainSetup) -> tuple[nn.Module, str]:
    """(model, name) of the weights the member keeps: the SWA average, the EMA, or the last weights."""
    t, tc = setup.training, setup.cfg.train
    if t.swa_model is not None:
        final = t.swa_model.module
        copy_non_bn_buffers(t.model, final)
        setup.data.train_loader.sampler.set_epoch(tc.epochs)  # a fresh, still seeded, pass for the BN statistics
        with autocast(setup.device, tc.amp):
            recompute_bn_stats(final, setup.data.train_loader, setup.data.prepare, max_steps=tc.max_steps_per_epoch)
        return final, "swa"
    if t.ema_model is not None:
        return t.ema_model.module, "ema"
    return t.model, "last"


def member_metrics(setup: TrainSetup, result: MemberResult, provenance: dict, mlflow_run_id: str | None) -> dict:
    """metrics.json of the member: final validation scores, throughput, sizes, history and provenance.

    val_logloss is the LogLoss after one temperature fitted on this fold's validation rows (val_temperature; an
    in-sample one-parameter fit, as the calibrate step makes), val_logloss_raw that of the softmax as it is."""
    tc, data, history = setup.cfg.train, setup.data, setup.training.history
    train_seconds = sum(h["train_seconds"] for h in history)
    tempered, temperature = tempered_log_loss(result.val_labels, result.oof_logits, data.classes, data.aliases)
    return {
        "backbone": setup.backbone, "fold": setup.fold, "weights": result.weights,
        "val_logloss": tempered,
        "val_logloss_raw": log_loss(result.val_labels, softmax(result.oof_logits), data.classes, data.aliases),
        "val_temperature": temperature,
        "val_accuracy": accuracy(result.val_labels, result.oof_logits),
        "epochs": tc.epochs, "global_step": setup.training.global_step,
        "train_img_per_s": sum(h["train_images"] for h in history) / max(train_seconds, 1e-9),
        "peak_memory_mb": peak_memory_mb(setup.device), "device": str(setup.device),
        "image_size": setup.image_size, "batch_size": setup.batch_size, "lr": setup.lr, "tta": list(tc.tta),
        "n_train": len(data.train_rows), "n_val": len(data.val_rows), "n_test": len(data.test_rows),
        "n_test_unreadable": len(data.test_rows) - len(data.test_ok),
        "history": history, "mlflow_run_id": mlflow_run_id, "provenance": provenance,
    }  # fmt: skip


def member_files(
    setup: TrainSetup, result: MemberResult, metrics: dict, pages: dict[str, bytes] | None = None
) -> dict[str, bytes]:
    """The member's output files by name, in publishing order: metrics.json, which marks it complete, last.

    pages: pages built above this package (the train step's errors.html), published before metrics.json."""
    data, classes = setup.data, np.array(setup.data.classes)
    return {
        "oof.npz": npz_bytes(image_id=data.val_rows["image_id"].astype(str).to_numpy(), logits=result.oof_logits,
                             labels=result.val_labels, embeddings=result.oof_embeddings, classes=classes),
        "test.npz": npz_bytes(image_id=data.test_rows["image_id"].astype(str).to_numpy(), logits=result.test_logits,
                              classes=classes),
        "model.pt": model_bytes(setup, result),
        "confusion.json": json.dumps(confusion(result.val_labels, result.oof_logits, list(setup.data.classes)),
                                     ensure_ascii=False).encode(),
        **(pages or {}),
        "config.yaml": setup.cfg.to_yaml().encode(),
        "metrics.json": json.dumps(metrics, indent=2, ensure_ascii=False).encode(),
    }  # fmt: skip


def confusion(labels: np.ndarray, logits: np.ndarray, classes: list[str]) -> dict:
    """The validation fold's confusion matrix (rows: true class, columns: predicted), for the KFP UI."""
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(labels, logits.argmax(axis=1), labels=range(len(classes)))
    return {"classes": classes, "matrix": matrix.tolist()}


def npz_bytes(**arrays) -> bytes:
    """Compressed .npz of `arrays`; strings as fixed-width unicode, never object arrays, so the files load
    with allow_pickle=False."""
    buffer = io.BytesIO()
    arrays = {k: np.asarray(v).astype(str) if np.asarray(v).dtype == object else np.asarray(v) for k, v in arrays.items()}
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def model_bytes(setup: TrainSetup, result: MemberResult) -> bytes:
    """model.pt: the final weights on CPU and what rebuilding and feeding the model needs (loads weights_only)."""
    buffer = io.BytesIO()
    classes, data = setup.data.classes, setup.data
    torch.save(
        {
            "state_dict": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
            "config": setup.cfg.model_dump(mode="json"),
            "classes": list(classes),
            "backbone": setup.backbone,
            "fold": int(setup.fold),
            "weights": result.weights,
            "num_classes": len(classes),
            "embedding_dim": int(result.model.embedding_dim),
            "image_size": int(setup.image_size),
            "mean": [float(m) for m in data.mean],
            "std": [float(s) for s in data.std],
        },
        buffer,
    )
    return buffer.getvalue()
