"""Load trained members (one per (backbone, fold)) and read/write `.npz` files through `finegrain.storage`.

A member is a train-step output prefix holding `oof.npz`, `test.npz` and `metrics.json`; its key is
`<backbone>/fold<k>` taken from `metrics.json`. Every `.npz` is written without pickles (string arrays as
fixed-width unicode) so it loads with `allow_pickle=False`.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from finegrain import storage
from finegrain.data.layouts import nfc


@dataclass
class Member:
    """One trained (backbone, fold) model's out-of-fold and test predictions."""

    key: str
    uri: str
    classes: list[str]
    metrics: dict
    oof_ids: np.ndarray
    oof_logits: np.ndarray
    oof_labels: np.ndarray
    oof_embeddings: np.ndarray | None
    test_ids: np.ndarray
    test_logits: np.ndarray

    @property
    def backbone(self) -> str:
        return self.key.rsplit("/", 1)[0]

    @property
    def fold(self) -> int:
        return int(self.metrics["fold"])


def _as_storable(name: str, value: object) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind in ("O", "S"):
        # Object/bytes arrays would need pickle to load; store them as unicode instead.
        try:
            arr = arr.astype(str)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"array {name!r}: cannot be stored without pickle ({exc})") from exc
    if arr.dtype.kind == "O":
        raise ValueError(f"array {name!r}: object arrays are not allowed")
    return arr


def save_npz(uri: str, **arrays: object) -> str:
    """Write `arrays` as a compressed `.npz` at `uri` (local path or s3://); returns the URI."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: _as_storable(k, v) for k, v in arrays.items()})
    return storage.write_bytes(uri, buf.getvalue())


def load_npz(uri: str) -> dict[str, np.ndarray]:
    """Read every array of the `.npz` at `uri` into a dict (no pickles allowed)."""
    data = storage.read_bytes(uri)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{uri}: not a readable pickle-free .npz ({exc})") from exc


def _require(arrays: dict[str, np.ndarray], keys: Sequence[str], uri: str) -> None:
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ValueError(f"{uri}: missing array(s) {missing}; has {sorted(arrays)}")


def load_member(uri: str) -> Member:
    """Read one train-step output prefix (oof.npz, test.npz, metrics.json) and check its shapes."""
    oof_uri, test_uri, metrics_uri = (storage.join(uri, f) for f in ("oof.npz", "test.npz", "metrics.json"))
    try:
        metrics = json.loads(storage.read_text(metrics_uri))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{metrics_uri}: not valid JSON ({exc})") from exc
    for field in ("backbone", "fold"):
        if field not in metrics:
            raise ValueError(f"{metrics_uri}: missing field {field!r}")
    key = f"{metrics['backbone']}/fold{int(metrics['fold'])}"

    oof = load_npz(oof_uri)
    _require(oof, ("image_id", "logits", "labels", "classes"), oof_uri)
    test = load_npz(test_uri)
    _require(test, ("image_id", "logits", "classes"), test_uri)

    classes = [nfc(c) for c in oof["classes"]]
    if [nfc(c) for c in test["classes"]] != classes:
        raise ValueError(f"{test_uri}: classes differ from {oof_uri}")
    n_classes = len(classes)
    logits, labels, ids = oof["logits"], oof["labels"], oof["image_id"]
    if logits.ndim != 2 or logits.shape[1] != n_classes:
        raise ValueError(f"{oof_uri}: logits shape {logits.shape}, expected [n, {n_classes}] (classes)")
    if labels.shape != (len(logits),) or ids.shape != (len(logits),):
        raise ValueError(
            f"{oof_uri}: labels {labels.shape} / image_id {ids.shape} do not match logits rows {len(logits)}"
        )
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{oof_uri}: labels must be integer class indices, got dtype {labels.dtype}")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"{oof_uri}: labels outside [0, {n_classes})")
    emb = oof.get("embeddings")
    if emb is not None and (emb.ndim != 2 or len(emb) != len(logits)):
        raise ValueError(f"{oof_uri}: embeddings shape {emb.shape} does not match {len(logits)} rows")
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"{oof_uri}: duplicate image_id values")
    t_logits, t_ids = test["logits"], test["image_id"]
    if t_logits.ndim != 2 or t_logits.shape[1] != n_classes or t_ids.shape != (len(t_logits),):
        raise ValueError(
            f"{test_uri}: logits {t_logits.shape} / image_id {t_ids.shape}, expected [n, {n_classes}] / [n]"
        )
    for name, arr, src in (("oof logits", logits, oof_uri), ("test logits", t_logits, test_uri)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{src}: {name} contain NaN or inf")
    return Member(
        key=key,
        uri=str(uri),
        classes=classes,
        metrics=metrics,
        oof_ids=ids.astype(str),
        oof_logits=logits.astype(np.float64),
        oof_labels=labels.astype(np.int64),
        oof_embeddings=emb,
        test_ids=t_ids.astype(str),
        test_logits=t_logits.astype(np.float64),
    )


def load_members(uris: Sequence[str]) -> list[Member]:
    """Load several members; they must share the same classes in the same order and distinct keys."""
    if not uris:
        raise ValueError("no members given")
    members = [load_member(u) for u in uris]
    ref = members[0]
    for m in members[1:]:
        if m.classes != ref.classes:
            diff = sorted(set(m.classes) ^ set(ref.classes))[:5]
            what = f"differing names {diff}" if diff else "same names in a different order"
            raise ValueError(f"{m.uri}: classes differ from {ref.uri} ({what})")
    seen: dict[str, str] = {}
    for m in members:
        if m.key in seen:
            raise ValueError(f"{m.uri}: member key {m.key!r} also used by {seen[m.key]}")
        seen[m.key] = m.uri
    return sorted(members, key=lambda m: m.key)


def align_backbone_oof(
    members: list[Member], probs: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Stack each backbone's folds' OOF rows and align backbones by image_id.

    Returns (image_ids sorted, labels, {backbone: probs [n, C]}). Errors if a backbone's folds overlap or if
    backbones do not cover the same images with the same labels.
    """
    by_backbone: dict[str, list[Member]] = defaultdict(list)
    for m in members:
        by_backbone[m.backbone].append(m)
    ref_ids = ref_labels = ref_name = None
    stacked: dict[str, np.ndarray] = {}
    for backbone, ms in sorted(by_backbone.items()):
        ids = np.concatenate([m.oof_ids for m in ms])
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(
                f"backbone {backbone!r}: image_id {uniq[counts > 1][0]!r} is in the OOF rows of more than one fold "
                f"({[m.key for m in ms]}); each train image must be out-of-fold for exactly one fold"
            )
        order = np.argsort(ids)
        labels = np.concatenate([m.oof_labels for m in ms])[order]
        p = np.concatenate([probs[m.key] for m in ms])[order]
        ids = ids[order]
        if ref_ids is None:
            ref_ids, ref_labels, ref_name = ids, labels, backbone
        elif not np.array_equal(ids, ref_ids):
            missing = np.setdiff1d(ref_ids, ids)
            extra = np.setdiff1d(ids, ref_ids)
            raise ValueError(
                f"OOF image_ids of backbone {backbone!r} differ from backbone {ref_name!r}: {len(missing)} missing "
                f"(e.g. {missing[:3].tolist()}), {len(extra)} extra (e.g. {extra[:3].tolist()}); "
                "every backbone must be trained on the same folds"
            )
        elif not np.array_equal(labels, ref_labels):
            bad = ids[labels != ref_labels][:3].tolist()
            raise ValueError(
                f"OOF labels of backbone {backbone!r} differ from {ref_name!r} for image_ids {bad}"
            )
        stacked[backbone] = p
    return ref_ids, ref_labels, stacked


def average_test_by_backbone(
    members: list[Member], probs: dict[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per backbone, the mean of its folds' test probabilities, rows ordered by sorted image_id."""
    ref = np.sort(members[0].test_ids)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = defaultdict(int)
    for m in members:
        order = np.argsort(m.test_ids)
        if not np.array_equal(m.test_ids[order], ref):
            raise ValueError(f"{m.uri}: test image_ids differ from {members[0].uri}")
        sums[m.backbone] = sums.get(m.backbone, 0.0) + probs[m.key][order]
        counts[m.backbone] += 1
    return ref, {b: s / counts[b] for b, s in sums.items()}


def fold_of_rows(members: list[Member], ids: np.ndarray) -> np.ndarray:
    """The fold whose validation rows hold each of `ids` (the rows `align_backbone_oof` returns).

    Every backbone must have held each image out in the same fold: cross-fitting scores a fold's rows with
    recipes fitted on the other folds, which is out-of-sample only if no backbone trained on those rows."""
    fold_of: dict[str, tuple[int, str]] = {}
    for m in members:
        for image_id in m.oof_ids:
            fold, key = fold_of.setdefault(str(image_id), (m.fold, m.key))
            if fold != m.fold:
                raise ValueError(
                    f"image_id {image_id!r} is out-of-fold in fold {fold} for {key} but in fold {m.fold} for "
                    f"{m.key}; every backbone must be trained on the same folds"
                )
    return np.array([fold_of[str(i)][0] for i in ids], dtype=np.int64)
