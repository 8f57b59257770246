"""What the pipeline's parent MLflow run shows: a few key params when it opens, the headline when it ends.

A person opening the parent run in the MLflow UI should see what the run was (backbones, folds, epochs, image
size, the data hash; the whole resolved config as `config.yaml`) and what it gave (the ensemble's OOF LogLoss,
cross-fitted over folds, beside its in-sample figure; the best member, whether the submission validated, how
many images) without opening a child run. The headline is read from the step outputs the run's plan names
(`runs/<run>/run.json`: every task's output URI), whether a step ran or its outputs were reused, so a run that
reused its ensemble still shows its LogLoss.
"""

from __future__ import annotations

import json

from finegrain import storage
from finegrain.config import Config
from finegrain.orchestration import layout


def key_params(cfg: Config, data_hash: str, code_version: str) -> dict[str, object]:
    """The ~15 settings that tell one pipeline run from another."""
    t = cfg.train
    return {
        "data.uri": cfg.data.uri, "data_hash": data_hash, "code_version": code_version,
        "backbones": ", ".join(b.name for b in t.backbones), "data.folds": cfg.data.folds,
        "members": len(t.backbones) * cfg.data.folds, "train.epochs": t.epochs, "train.image_size": t.image_size,
        "train.batch_size": t.batch_size, "train.lr": t.lr, "train.head": t.head.name,
        "train.swa": t.swa.enabled, "calibrate.method": cfg.calibrate.method, "ensemble.method": cfg.ensemble.method,
        "ensemble.hierarchical": cfg.ensemble.hierarchical,
    }  # fmt: skip


def _load(uri: str | None, name: str) -> dict:
    if not uri:
        return {}
    try:
        value = json.loads(storage.read_text(storage.join(uri, name)))
    except (FileNotFoundError, ValueError):  # a step that never ran (the pipeline failed before it)
        return {}
    return value if isinstance(value, dict) else {}


def headline(run_root: str) -> tuple[dict[str, object], dict[str, float]]:
    """(params, metrics) of the run in `run_root`, from the outputs its plan names; whatever exists of them."""
    tasks = _load(run_root, layout.RUN_FILE).get("tasks") or {}
    uris = {name: (task or {}).get("uri") for name, task in tasks.items()}
    pre = _load(uris.get("preprocess"), "summary.json")
    ens = _load(uris.get("ensemble"), "ensemble.json")
    ens_summary = _load(uris.get("ensemble"), "summary.json")
    check = _load(uris.get("submit"), "submission_check.json")
    registration = _load(uris.get("register"), "registration.json")
    metrics: dict[str, float] = {}
    params: dict[str, object] = {}
    if pre:
        metrics.update(n_images=pre.get("images"), n_train_images=pre.get("train"), n_test_images=pre.get("test"),
                       n_classes=pre.get("classes"), training_rows=pre.get("training_rows"))  # fmt: skip
    if ens:
        members = ens.get("member_oof_logloss") or {}
        metrics.update(
            ensemble_oof_logloss=ens.get("ensemble_oof_logloss"), uniform_oof_logloss=ens.get("uniform_oof_logloss"),
            ensemble_oof_logloss_in_sample=ens.get("ensemble_oof_logloss_in_sample"),
            prior_mix_eps=ens.get("prior_mix_eps"),
            ensemble_oof_accuracy=ens_summary.get("ensemble_oof_accuracy"), n_members=len(members),
            hierarchical_used=float(bool((ens.get("hierarchical") or {}).get("used"))),
        )  # fmt: skip
        if members:
            best = min(members, key=members.get)
            params["best_member"] = best
            metrics["best_member_oof_logloss"] = members[best]
    if check:
        metrics["submission_valid"] = float(bool(check.get("valid", check.get("ok", False))))
    if registration.get("registered_model"):
        params["registered_model"] = registration["registered_model"]
    return params, {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
