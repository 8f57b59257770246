"""What a train member was made from, so finished outputs or a checkpoint are reused only for the same inputs.

A member's provenance is the train settings that shape its weights (this member's backbone spec, not the
whole backbone list: adding a backbone must not retrain the others), its fold, and a hash of the manifest's
content (rows and classes.json). It is recorded in `metrics.json` and in every checkpoint; `mismatch()` says
in words what changed, for the log line that explains a retrain.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pandas as pd

from finegrain.config import Config, flatten

# Settings that change how fast a member trains or where its scratch goes, never what it learns.
NOT_IN_FINGERPRINT = ("backbones", "num_workers", "cache_dir", "log_model_max_mb")


def manifest_hash(table: pd.DataFrame, class_info: dict) -> str:
    """Hash of the manifest's rows (every column, in order) and of classes.json, independent of file bytes."""
    h = hashlib.sha256()
    h.update(json.dumps([str(c) for c in table.columns]).encode())
    h.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
    h.update(json.dumps(class_info, sort_keys=True, ensure_ascii=False, default=str).encode())
    return h.hexdigest()[:16]


def member_settings(cfg: Config, backbone: str, fold: int) -> dict:
    """The settings that shape member (backbone, fold)'s weights, as flat dotted keys (`train.lr`, `fold`)."""
    train = cfg.model_dump(mode="json")["train"]
    for key in NOT_IN_FINGERPRINT:
        train.pop(key, None)
    train["backbone"] = cfg.train.backbone(backbone).model_dump(mode="json")
    return {**flatten(train, "train"), "fold": int(fold)}


def member_provenance(cfg: Config, backbone: str, fold: int, manifest_digest: str) -> dict:
    """{"fingerprint", "manifest", "settings"} of member (backbone, fold) trained with `cfg` on that manifest."""
    settings = member_settings(cfg, backbone, fold)
    payload = json.dumps({"settings": settings, "manifest": manifest_digest}, sort_keys=True, ensure_ascii=False)
    return {
        "fingerprint": hashlib.sha256(payload.encode()).hexdigest()[:16],
        "manifest": manifest_digest,
        "settings": settings,
    }


def mismatch(recorded: Any, current: dict) -> str | None:
    """None when `recorded` (from metrics.json or a checkpoint) matches `current`; else what differs, in words."""
    if not isinstance(recorded, dict) or "fingerprint" not in recorded:
        return "no fingerprint recorded with them (written by an older finegrain)"
    if recorded["fingerprint"] == current["fingerprint"]:
        return None
    reasons = []
    if recorded.get("manifest") != current["manifest"]:
        reasons.append(f"manifest content changed ({recorded.get('manifest')} -> {current['manifest']})")
    old, new = recorded.get("settings") or {}, current["settings"]
    missing = object()
    changed = [
        f"{key} {old.get(key, '<unset>')!r} -> {new.get(key, '<unset>')!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key, missing) != new.get(key, missing)
    ]
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        reasons.append(f"settings changed: {shown}")
    return "; ".join(reasons) or "fingerprint differs"
