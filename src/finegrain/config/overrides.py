"""`--set key.path=value` overrides: the value parsed as YAML (within size limits), set in the config tree."""

from __future__ import annotations

from typing import Any

import yaml

from finegrain.config.base import ConfigError
from finegrain.config.yaml_limits import YamlLimitError, load_yaml

MAX_OVERRIDE_BYTES = 64 * 1024  # one --set value


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    """Set `tree[a][b][c] = value` for `dotted` = "a.b.c", creating the missing levels."""
    keys = dotted.split(".")
    node = tree
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(keys[: i + 1])}: is a value, cannot set {dotted!r} below it")
        node = child
    node[keys[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """Split `a.b=value` into the key and the YAML-parsed value."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key.path=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r}: empty key")
    try:
        value = load_yaml(raw, max_bytes=MAX_OVERRIDE_BYTES) if raw.strip() else ""
    except YamlLimitError as exc:
        raise ConfigError(f"{key}: override value {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: value {raw!r} is not valid YAML ({exc})") from exc
    return key, value
