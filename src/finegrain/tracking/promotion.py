"""Aliases and the promotion gate: every new version becomes `challenger`; `champion` moves to it only when its
LogLoss on the same labelled images is lower than the current champion's by at least promotion.min_improvement.
The first version becomes champion. Stages are deprecated in MLflow; aliases are what callers resolve
(`models:/finegrain-ensemble@champion`).

Which images (`GateSet.description` says which; so do the version's tags and registration.md):
- `promotion.holdout_uri`: a labelled set no member trained on (ImageFolder layout, `train/<class>/*`). Both
  versions predict it through their registered pyfunc, so what is scored is what is served.
- otherwise this run's out-of-fold images (the ensemble step's oof_probs.npz). The challenger is scored by
  its out-of-fold ensemble probabilities (each image predicted only by members that did not train on it, and
  cross-fitted: weights and post-processing fitted on the other folds; its full ensemble would be scoring its
  own training images), the champion by predicting the images. A champion's own out-of-fold score is never
  used: scores on different data versions are not comparable. A champion that trained on some of these images
  scores optimistically, so this gate leans towards keeping it.
Both are scored as the scorer sees the submission (alias columns counted with their class), on the images
both could use, at most promotion.max_images of them (a sample seeded by data.seed). The decision, both
scores, the margin and the image set become tags `finegrain.promotion.*` on the new version.
"""

from __future__ import annotations

import tempfile
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from finegrain import storage
from finegrain.config import Config
from finegrain.metrics import EPS
from finegrain.tracking.mlflow_support import ARTIFACT_TIMEOUT_S, http_settings

CHAMPION, CHALLENGER = "champion", "challenger"
TAG_PREFIX = "finegrain.promotion."


@dataclass
class GateSet:
    """The labelled images both versions are scored on."""

    uris: list[str]
    labels: list[str]  # class names (NFC; an alias is scored as its canonical class)
    description: str
    oof_probs: np.ndarray | None = None  # the challenger's out-of-fold class probabilities (OOF mode)
    oof_classes: list[str] | None = None


def _sample(n: int, max_images: int, seed: int) -> np.ndarray:
    if n <= max_images:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_images, replace=False))


def gate_set(cfg: Config, ensemble_dir: str, data_uri: str) -> GateSet:
    """The configured holdout set, else this run's out-of-fold images (see the module docstring)."""
    from finegrain.data.layouts import read_dataset

    r = cfg.promotion
    if r.holdout_uri:
        train = read_dataset(r.holdout_uri, "imagefolder", cfg.data.extensions).train
        idx = _sample(len(train), r.max_images, cfg.data.seed)
        return GateSet(
            uris=[str(p) for p in train["path"].iloc[idx]], labels=[str(c) for c in train["label"].iloc[idx]],
            description=f"holdout {r.holdout_uri} ({len(idx)} of {len(train)} images), both versions predicted",
        )  # fmt: skip
    from finegrain.posthoc.members import load_npz

    oof = load_npz(storage.join(ensemble_dir, "oof_probs.npz"))
    path_of = dict(zip(*(read_dataset(data_uri, cfg.data.layout, cfg.data.extensions).images[k] for k in ("image_id", "path"))))
    classes = [str(c) for c in oof["classes"]]
    found = [i for i, image_id in enumerate(oof["image_id"]) if str(image_id) in path_of]
    idx = [found[j] for j in _sample(len(found), r.max_images, cfg.data.seed)]
    return GateSet(
        uris=[str(path_of[str(oof["image_id"][i])]) for i in idx],
        labels=[classes[int(oof["labels"][i])] for i in idx],
        description=(
            f"out-of-fold images of this run ({len(idx)} of {len(oof['image_id'])}): challenger by its out-of-fold "
            "ensemble probabilities, champion predicted (a champion that trained on some of these images scores "
            "optimistically, so the gate leans towards keeping it; promotion.holdout_uri names a fair set)"
        ),
        oof_probs=np.asarray(oof["probs"], dtype=np.float64)[idx], oof_classes=classes,
    )  # fmt: skip


def scored_logloss(
    probs: np.ndarray, columns: Sequence[str], column_to_class: Mapping[str, str], aliases: Mapping[str, str],
    labels: Sequence[str],
) -> float:
    """LogLoss as the scorer computes it from submission columns: a row's score is the mass on every column of
    its label's class (an alias column counts for its canonical class), rows renormalised and clipped."""

    def canonical(name: str) -> str:
        name = unicodedata.normalize("NFC", str(name))
        return nfc_aliases.get(name, name)

    nfc_aliases = {unicodedata.normalize("NFC", a): unicodedata.normalize("NFC", c) for a, c in aliases.items()}
    column_class = np.array([canonical(column_to_class.get(c, c)) for c in columns], dtype=object)
    p = np.asarray(probs, dtype=np.float64)
    p = p / np.where(p.sum(axis=1, keepdims=True) > 0, p.sum(axis=1, keepdims=True), 1.0)
    mass = np.array([p[i, column_class == canonical(label)].sum() for i, label in enumerate(labels)])
    return float(-np.mean(np.log(np.clip(mass, EPS, 1 - EPS))))


def champion_version(client, name: str) -> str | None:
    """The version the champion alias points at, or None (no alias yet, or its version was deleted)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def _predict(cfg: Config, version: str, gate: GateSet) -> tuple[np.ndarray, dict]:
    """Registered version `version` on the gate images: (column probabilities, its spec)."""
    from finegrain.tracking.batch_predict import predict_uris
    from finegrain.tracking.registry import load_registered_model

    with tempfile.TemporaryDirectory() as tmp, http_settings(ARTIFACT_TIMEOUT_S):
        model = load_registered_model(
            f"models:/{cfg.tracking.register_model}/{version}", cfg.tracking.uri, dst_path=tmp
        )
    result = predict_uris(model, gate.uris, cfg.predict.batch_size)
    return result.probs, model.unwrap_python_model().spec


def _score(probs: np.ndarray, spec: dict, labels: list[str], rows: np.ndarray) -> float:
    return scored_logloss(probs[rows], spec["columns"], spec["column_to_class"], spec["aliases"], [labels[i] for i in rows])


def compare(cfg: Config, gate: GateSet, challenger: str, spec: dict, champion: str) -> dict:
    """Both LogLosses on the images both could score: {challenger_logloss, champion_logloss, images}."""
    from finegrain.posthoc.submission import probs_to_columns

    if gate.oof_probs is not None:
        ours = probs_to_columns(
            gate.oof_probs, gate.oof_classes, spec["columns"], spec["column_to_class"], spec["aliases"],
            spec["alias_mode"],
        )  # fmt: skip
        our_spec = spec
    else:
        ours, our_spec = _predict(cfg, challenger, gate)
    theirs, their_spec = _predict(cfg, champion, gate)
    rows = np.flatnonzero(np.isfinite(ours).all(axis=1) & np.isfinite(theirs).all(axis=1))
    if len(rows) == 0:
        raise ValueError("neither version could score any of the gate images")
    return {
        "challenger_logloss": _score(ours, our_spec, gate.labels, rows),
        "champion_logloss": _score(theirs, their_spec, gate.labels, rows),
        "images": int(len(rows)),
    }


def promote(cfg: Config, version: str, gate: GateSet, spec: dict) -> dict:
    """Alias the new version `challenger`, run the gate against the champion, move `champion` if it passes."""
    from mlflow import MlflowClient

    name, margin = cfg.tracking.register_model, cfg.promotion.min_improvement
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    with http_settings():
        client.set_registered_model_alias(name, CHALLENGER, version)
        champion = champion_version(client, name)
    record = {
        "version": version, "champion_before": champion, "margin": margin, "eval_set": gate.description,
        "challenger_logloss": None, "champion_logloss": None, "images": None,
    }  # fmt: skip
    if champion is None:
        promoted, reason = True, "first version: there was no champion"
    else:
        try:
            record.update(compare(cfg, gate, version, spec, champion))
        except Exception as exc:  # noqa: BLE001 - a champion this code cannot score is kept, and says why
            promoted, reason = False, f"champion version {champion} could not be scored ({type(exc).__name__}: {exc})"
        else:
            gain = record["champion_logloss"] - record["challenger_logloss"]
            promoted = gain >= margin
            verb = ">=" if promoted else "<"
            reason = f"LogLoss gain {gain:.4f} {verb} margin {margin:g} over champion version {champion}"
    record.update(decision="promoted" if promoted else "kept", reason=reason)
    record["champion"] = version if promoted else champion
    with http_settings():
        if promoted:
            client.set_registered_model_alias(name, CHAMPION, version)
        for key in ("decision", "reason", "challenger_logloss", "champion_logloss", "champion_before", "margin",
                    "eval_set", "images"):  # fmt: skip
            value = record[key]
            client.set_model_version_tag(name, version, TAG_PREFIX + key, "" if value is None else str(value))
    return record
