"""What a pipeline run decides when it starts.

`plan_run` is the pipeline's first task (never cached): it resolves the run's config from the parameters a
person edits in the Kubeflow UI (the config text plus `key=value` overrides, the same syntax as `--set`),
fingerprints the dataset as it is *now*, and derives everything that must change when the data or the config
changes: the data hash (preprocess's cache key), the per-run work root (so a changed dataset never finds the
finished members of an older one) and the backbone x fold fan-out. Doing this at run time, not when the run
or the recurring run is created, is what lets a scheduled run retrain on new data.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

from finegrain import storage
from finegrain.config import Config, ConfigError, config_from_dict, config_to_text, load_config

# The config sections a step's outputs depend on; tracking/storage/pipeline settings do not change a model.
OUTPUT_SECTIONS = ("data", "preprocess", "train", "regroup", "calibrate", "ensemble", "submit")


def resolve_config(
    config_text: str, overrides: list[str] | tuple[str, ...] = (), data_uri: str = ""
) -> Config:
    """The run's config: `config_text` (JSON or YAML) with `key=value` overrides; `data_uri` replaces data.uri."""
    try:
        tree = json.loads(config_text) if config_text.strip() else {}
    except json.JSONDecodeError:
        try:
            tree = yaml.safe_load(config_text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config_text: neither JSON nor YAML ({exc})") from None
    if not isinstance(tree, dict):
        raise ConfigError("config_text: top level must be a mapping of sections")
    overrides = [str(o) for o in (overrides or [])]
    if data_uri:
        overrides.append(f"data.uri={json.dumps(data_uri)}")
    return config_from_dict(tree, overrides)


def config_from_text(
    config_text: str, overrides: list[str] | tuple[str, ...] = (), data_uri: str = ""
) -> Config:
    """The run's config (see resolve_config), with its process-wide storage settings applied in this process."""
    cfg = resolve_config(config_text, overrides, data_uri)
    storage.configure(cfg.storage)
    return cfg


def config_from_file(path: str, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """A config file plus `--set` overrides (the command line's path), with its storage settings applied."""
    cfg = load_config(path, overrides)
    storage.configure(cfg.storage)
    return cfg


def member_items(cfg: Config) -> list[dict]:
    """The fan-out: one item per (backbone, fold)."""
    return [{"backbone": b.name, "fold": k} for b in cfg.train.backbones for k in range(cfg.data.folds)]


def run_key(cfg: Config, data_hash: str) -> str:
    """12 hex digits naming one (output-relevant config, dataset content) pair."""
    dumped = cfg.model_dump(mode="json")
    body = json.dumps({k: dumped[k] for k in OUTPUT_SECTIONS}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(f"{body}\0{data_hash}".encode()).hexdigest()[:12]


def plan_run(
    config_text: str, overrides: list[str] | tuple[str, ...] = (), data_uri: str = ""
) -> dict[str, Any]:
    """Resolve the config and fingerprint the data: config (JSON), data, data_hash, code_version, work_root,
    members."""
    from finegrain.data.fingerprint import code_version, dataset_fingerprint
    from finegrain.models.weight_sources import check_backbones

    cfg = config_from_text(config_text, overrides, data_uri)
    for note in check_backbones(cfg.train):  # a bad backbone fails here, not after preprocess on a GPU node
        print(f"warning: {note}", flush=True)
    data_hash = dataset_fingerprint(cfg.data.uri)
    return {
        "config": config_to_text(cfg),
        "data": cfg.data.uri,
        "data_hash": data_hash,
        "code_version": code_version(),
        "work_root": f"{cfg.pipeline.work_root.rstrip('/')}/{run_key(cfg, data_hash)}",
        "members": member_items(cfg),
    }
