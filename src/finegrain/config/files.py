"""Config files: load (YAML, local or s3://, plus overrides), save beside a step's outputs, and text forms."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from finegrain import storage
from finegrain.config.base import ConfigError
from finegrain.config.overrides import parse_override, set_dotted
from finegrain.config.schema import Config
from finegrain.config.yaml_limits import MAX_BYTES, YamlLimitError, load_yaml


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"{loc}: unknown key")
        elif e["loc"]:
            lines.append(f"{loc}: {e['msg']} (got {e.get('input')!r})")
        else:  # a whole-config check: the input is the entire config, not worth echoing
            lines.append(f"{loc}: {e['msg']}")
    return "invalid config:\n  " + "\n  ".join(lines)


def config_from_dict(tree: dict, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    tree = copy.deepcopy(tree) if tree else {}
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(tree, key, value)
    try:
        return Config.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_errors(err)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (local path or s3:// URI; None = all defaults) and apply `key=value` overrides."""
    tree: dict = {}
    if path:
        if storage.size(str(path)) > MAX_BYTES:  # before reading: a huge file must not be loaded at all
            raise ConfigError(f"{path}: larger than {MAX_BYTES} bytes; not a config file")
        try:
            text = storage.read_bytes(str(path)).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        try:
            tree = load_yaml(text) or {}
        except YamlLimitError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
    try:
        return config_from_dict(tree, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path or '<defaults>'}: {exc}") from None


def config_to_text(cfg: Config) -> str:
    """The resolved config as one line of JSON: pipeline parameters must not span lines (the KFP compiler
    writes their defaults into a YAML comment header, and a newline there breaks the compiled file)."""
    return json.dumps(cfg.model_dump(mode="json"), ensure_ascii=False, sort_keys=True)


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out
