"""Synthetic train-step outputs (members) for tests of regroup, calibrate, ensemble and submit.

`make_members(tmp_path)` writes `<root>/<backbone>/fold<k>/{oof.npz,test.npz,metrics.json}` laid out as the
train step does: every train row is in exactly one fold's `oof.npz` per backbone (the same folds for every
backbone), and every member predicts the same test set. Logits are a scaled, noisy one-hot with planted
group structure (confusions happen mostly between classes of the same group), multiplied by
`overconfidence`, so members are over-confident and backbones differ in quality (later backbones are weaker).
Embeddings cluster by group, then by class, so regroup can recover the groups.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from finegrain.metrics import accuracy, log_loss, softmax, tempered_log_loss
from finegrain.posthoc.members import save_npz


def planted_groups(n_classes: int, group_size: int = 3) -> list[list[int]]:
    """The class-index groups make_members plants: consecutive runs of `group_size` classes."""
    return [list(range(s, min(s + group_size, n_classes))) for s in range(0, n_classes, group_size)]


def synthetic_logits(
    labels: np.ndarray,
    n_classes: int,
    rng: np.random.Generator,
    signal: float,
    group_size: int = 3,
    group_signal: float = 1.5,
    noise: float = 1.0,
    overconfidence: float = 3.0,
) -> np.ndarray:
    """Bayes-posterior logits of a Gaussian observation, then multiplied by `overconfidence`.

    The observation is `signal` on the true class plus `group_signal` on every class of its group plus unit
    noise; its exact posterior logits are z @ mu (mu = class means), so `overconfidence` is the temperature
    that calibrates the member (up to sampling noise).
    """
    n = len(labels)
    group_of = np.arange(n_classes) // group_size
    means = signal * np.eye(n_classes) + group_signal * (group_of[:, None] == group_of[None, :])
    z = means[labels] + rng.normal(0.0, noise, size=(n, n_classes))
    return overconfidence * (z @ means) / noise**2


def make_members(
    tmp_path: str | Path,
    n_classes: int = 12,
    n_per_class: int = 30,
    backbones: Sequence[str] = ("a", "b"),
    folds: int = 3,
    overconfidence: float = 3.0,
    seed: int = 0,
    n_test: int | None = None,
    classes: Sequence[str] | None = None,
    group_size: int = 3,
    embedding_dim: int = 16,
    with_embeddings: bool = True,
) -> list[str]:
    """Write synthetic members under `tmp_path/members`; returns their URIs sorted by member key.

    The hidden test labels are written to `tmp_path/members/test_labels.npy` for tests that score test output.
    """
    rng = np.random.default_rng(seed)
    classes = list(classes) if classes is not None else [f"class_{i:03d}" for i in range(n_classes)]
    if len(classes) != n_classes:
        raise ValueError(f"{len(classes)} class names for n_classes={n_classes}")
    root = Path(tmp_path) / "members"
    root.mkdir(parents=True, exist_ok=True)

    labels = np.repeat(np.arange(n_classes), n_per_class)
    train_ids = np.array([f"train_{i:05d}" for i in range(len(labels))])
    # Stratified folds, shared by every backbone (as preprocess assigns them once).
    fold_of = np.empty(len(labels), dtype=np.int64)
    for c in range(n_classes):
        rows = rng.permutation(np.flatnonzero(labels == c))
        fold_of[rows] = np.arange(len(rows)) % folds
    n_test = n_test if n_test is not None else n_classes * 5
    test_labels = rng.integers(0, n_classes, size=n_test)
    test_ids = np.array([f"test_{i:05d}" for i in range(n_test)])
    np.save(root / "test_labels.npy", test_labels)

    group_of = np.arange(n_classes) // group_size
    group_centres = rng.normal(0.0, 4.0, size=(group_of.max() + 1, embedding_dim))
    class_centres = group_centres[group_of] + rng.normal(0.0, 1.0, size=(n_classes, embedding_dim))

    uris = []
    for b_idx, backbone in enumerate(backbones):
        signal = 1.6 / (1.0 + 0.35 * b_idx)  # later backbones are weaker
        for k in range(folds):
            rows = np.flatnonzero(fold_of == k)
            y = labels[rows]
            member_rng = np.random.default_rng([seed, b_idx, k])
            oof_logits = synthetic_logits(
                y, n_classes, member_rng, signal, group_size, overconfidence=overconfidence
            )
            test_logits = synthetic_logits(
                test_labels, n_classes, member_rng, signal, group_size, overconfidence=overconfidence
            )
            out = root / backbone / f"fold{k}"
            out.mkdir(parents=True, exist_ok=True)
            oof = {
                "image_id": train_ids[rows],
                "logits": oof_logits.astype(np.float32),
                "labels": y,
                "classes": classes,
            }
            if with_embeddings:
                emb = class_centres[y] + member_rng.normal(0.0, 0.5, size=(len(y), embedding_dim))
                oof["embeddings"] = emb.astype(np.float32)
            save_npz(str(out / "oof.npz"), **oof)
            save_npz(
                str(out / "test.npz"),
                image_id=test_ids,
                logits=test_logits.astype(np.float32),
                classes=classes,
            )
            probs = softmax(oof_logits)
            metrics = {
                "backbone": backbone,
                "fold": k,
                # as the train step writes them: after one temperature fitted on these rows, and raw
                "val_logloss": tempered_log_loss(y, oof_logits)[0],
                "val_logloss_raw": log_loss(y, probs),
                "val_accuracy": accuracy(y, probs),
                "epochs": 1,
            }
            (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
            uris.append((f"{backbone}/fold{k}", str(out)))
    return [u for _, u in sorted(uris)]
