"""Backbones are checked when a run's config is loaded: a timm name (with a suggestion when misspelt), a known
tag, and starting weights this machine can read -- or one error naming the alternatives."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

from finegrain import storage
from finegrain.config import ConfigError, TrainConfig
from finegrain.models import weight_sources
from finegrain.models.weight_sources import check_backbones

HUB_REPO = "timm/resnet10t.c3_in1k"  # where timm 1.0 finds resnet10t's default weights


def _train(*backbones) -> TrainConfig:
    return TrainConfig(backbones=list(backbones))


def _error(*backbones) -> str:
    with pytest.raises(ConfigError) as err:
        check_backbones(_train(*backbones))
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face hub cache, online unless a test says otherwise."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return tmp_path / "hub"


def test_explicit_sources_pass_and_a_bare_name_gets_a_note(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(1)}, tmp_path / "w.pt")
    notes = check_backbones(_train(
        {"name": "efficientnet_lite0", "pretrained": "package:efficientnet_lite0"},
        {"name": "resnet10t", "pretrained": False},
        {"name": "test_convnext", "pretrained": str(tmp_path / "w.pt")},  # only its presence is checked here
        "convnext_tiny",
    ))  # fmt: skip
    assert len(notes) == 1 and notes[0].startswith("train.backbones[3] 'convnext_tiny' trains from scratch")
    assert "pretrained: false says from scratch on purpose" in notes[0]


def test_unknown_names_and_tags_fail_naming_close_ones() -> None:
    message = _error("convnxt_tiny", "resnet10t.in9k", {"name": "efficientnet_lite0", "pretrained": False})
    assert "train.backbones[0] 'convnxt_tiny': not a timm model; did you mean convnext_tiny" in message
    assert "train.backbones[1] 'resnet10t.in9k': Invalid pretrained tag (in9k)" in message
    assert "resnet10t.c3_in1k" in message and "backbones[2]" not in message


def test_wrong_package_and_missing_file_name_the_alternatives_once(tmp_path: Path) -> None:
    message = _error(
        {"name": "resnet10t", "pretrained": "package:efficientnet_lite0"},
        {"name": "resnet10t", "pretrained": "package:mobilenet_v9"},
        {"name": "resnet10t", "pretrained": str(tmp_path / "nope.pt")},
    )
    assert "holds weights for timm 'efficientnet_lite0', not 'resnet10t'" in message
    assert "'package:mobilenet_v9': unknown package weights" in message
    assert f"pretrained '{tmp_path / 'nope.pt'}': no such file" in message
    assert message.count("name weights this machine can read instead") == 1
    for alternative in ("'package:<name>'", "state-dict file path", "s3:// URI", "pretrained: false"):
        assert alternative in message


def test_s3_weights_must_exist(s3_bucket: str, tmp_path: Path) -> None:
    uri = storage.join(s3_bucket, "weights/resnet10t.pth")
    assert "no such file" in _error({"name": "resnet10t", "pretrained": uri})
    torch.save({"w": torch.zeros(1)}, tmp_path / "w.pth")
    storage.upload_file(tmp_path / "w.pth", uri)
    assert check_backbones(_train({"name": "resnet10t", "pretrained": uri})) == []


def test_hub_weights_in_the_cache_pass_offline(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = {"name": "resnet10t", "pretrained": True}
    assert "HF_HUB_OFFLINE is set" in _error(spec)
    repo = hf_cache / f"models--{HUB_REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "model.safetensors").write_bytes(b"weights")
    assert check_backbones(_train(spec)) == []
    assert weight_sources.hub_source("resnet10t").endswith("model.safetensors (Hugging Face cache)")


def test_hub_weights_not_cached_need_a_hub_that_answers(
    hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = []

    def unreachable(target: str, hf: bool) -> str:
        asked.append(target)
        return "ConnectError: [Errno -2] Name or service not known"

    monkeypatch.setattr(weight_sources, "_answers", unreachable)
    message = _error({"name": "resnet10t", "pretrained": True})
    assert (
        f"timm's weights from Hugging Face hub repo {HUB_REPO}: not in the local cache and ConnectError"
        in message
    )
    assert "pretrained: false" in message and asked == [HUB_REPO]
    monkeypatch.setattr(weight_sources, "_answers", lambda target, hf: "")
    assert (
        weight_sources.hub_source("resnet10t")
        == f"Hugging Face hub repo {HUB_REPO} (downloaded by the train task)"
    )
