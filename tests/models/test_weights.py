"""Pretrained weights: the packaged EfficientNet-Lite0 maps tensor for tensor and really classifies photos;
state-dict files (local and s3://) round-trip; every mismatch is an error naming the tensor, shapes and source."""

from __future__ import annotations

import pytest
import timm
import torch
from PIL import Image
from sklearn.datasets import load_sample_image
from timm.data import ImageNetInfo, create_transform, resolve_data_config

from finegrain import storage
from finegrain.config import BackboneSpec, HeadConfig
from finegrain.models import build_model, create_backbone, load_pretrained, packaged_weights_path


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}


@pytest.fixture(scope="module")
def package_state() -> dict[str, torch.Tensor]:
    state = torch.load(packaged_weights_path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def test_packaged_weights_map_every_tensor(package_state: dict[str, torch.Tensor]) -> None:
    backbone = create_backbone("efficientnet_lite0")
    report = load_pretrained(backbone, "package:efficientnet_lite0", "efficientnet_lite0")
    target = _tensors(backbone)
    assert report["n_tensors"] == len(target) == len(package_state) - 2
    assert report["skipped"] == ["_fc.weight", "_fc.bias"]  # a headless backbone has no classifier
    for (key, value), src in zip(target.items(), package_state.values()):
        assert torch.equal(value, src), key
    # The weights' own preprocessing (TF-Lite: (x - 127) / 128) reaches the data config.
    assert resolve_data_config({}, model=backbone)["mean"] == (0.5, 0.5, 0.5)


def test_packaged_weights_recognise_real_photos() -> None:
    model = timm.create_model("efficientnet_lite0", pretrained=False)  # with its 1000-class classifier
    report = load_pretrained(model, "package:efficientnet_lite0", "efficientnet_lite0")
    assert report["skipped"] == [] and report["n_tensors"] == len(_tensors(model))
    transform = create_transform(**resolve_data_config({}, model=model))
    batch = torch.stack(
        [transform(Image.fromarray(load_sample_image(n))) for n in ("china.jpg", "flower.jpg")]
    )
    with torch.no_grad():
        probs = model.eval()(batch).softmax(-1)
    info = ImageNetInfo()
    top5 = [[info.index_to_description(int(i)) for i in row] for row in probs.topk(5).indices]
    buildings = {
        "palace",
        "bell cote, bell cot",
        "church, church building",
        "castle",
        "monastery",
        "stupa, tope",
    }
    assert top5[0][0] in buildings and "palace" in top5[0], top5[0]
    assert "daisy" in top5[1][:3], top5[1]
    assert probs[0].max() > 0.2  # a random init would sit near 1/1000


def test_wrong_architecture_and_shapes_are_named() -> None:
    with pytest.raises(ValueError, match="for timm 'efficientnet_lite0', not 'resnet10t'"):
        load_pretrained(create_backbone("resnet10t"), "package:efficientnet_lite0", "resnet10t")
    ten_class = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=10)
    with pytest.raises(
        ValueError, match=r"classifier\.weight \(from _fc\.weight\).*\(1000, 1280\).*\(10, 1280\)"
    ):
        load_pretrained(ten_class, "package:efficientnet_lite0", "efficientnet_lite0")
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        load_pretrained(create_backbone("efficientnet_lite0"), "package:mobilenet_v9", "efficientnet_lite0")


def test_build_model_with_packaged_weights() -> None:
    model = build_model(
        BackboneSpec(name="efficientnet_lite0", pretrained="package:efficientnet_lite0"), HeadConfig(), 396
    )
    assert model.pretrained_report["source"].startswith("package:efficientnet_lite0")
    assert model.data_config["std"] == (0.5, 0.5, 0.5)


@pytest.fixture
def trained() -> torch.nn.Module:
    torch.manual_seed(1)
    return create_backbone("test_convnext")


@pytest.mark.parametrize("layout", ["raw", "state_dict", "model_ddp", "finegrain_model"])
def test_state_dict_file_round_trip(trained: torch.nn.Module, tmp_path, layout: str) -> None:
    state = trained.state_dict()
    if layout == "state_dict":
        obj = {"state_dict": state, "classes": ["a", "b"]}  # a checkpoint with extras beside the weights
    elif layout == "model_ddp":
        obj = {"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}
    elif layout == "finegrain_model":
        model = build_model(BackboneSpec(name="test_convnext"), HeadConfig(embedding_dim=8), 3)
        model.backbone.load_state_dict(state)
        obj = {"state_dict": model.state_dict()}
    else:
        obj = state
    torch.save(obj, tmp_path / "w.pt")
    fresh = create_backbone("test_convnext")
    report = load_pretrained(fresh, str(tmp_path / "w.pt"), "test_convnext")
    assert report["n_tensors"] == len(_tensors(fresh))
    for key, value in _tensors(fresh).items():
        assert torch.equal(value, state[key]), key


def test_state_dict_file_errors_name_tensor_and_source(trained: torch.nn.Module, tmp_path) -> None:
    state = trained.state_dict()
    bad = dict(state, **{"stem.0.weight": torch.zeros(3, 3)})
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad\.pt.*stem\.0\.weight.*\(3, 3\).*\(24, 3, 4, 4\)"):
        load_pretrained(create_backbone("test_convnext"), str(tmp_path / "bad.pt"), "test_convnext")
    missing = {k: v for k, v in state.items() if k != "stem.0.bias"}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"missing\.pt.*missing \['stem\.0\.bias'\]"):
        load_pretrained(create_backbone("test_convnext"), str(tmp_path / "missing.pt"), "test_convnext")
    torch.save({"weights": [1, 2]}, tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="junk.pt: not a state dict"):
        load_pretrained(create_backbone("test_convnext"), str(tmp_path / "junk.pt"), "test_convnext")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_pretrained(create_backbone("test_convnext"), str(tmp_path / "nope.pt"), "test_convnext")


def test_classifier_of_a_full_model_is_skipped(tmp_path) -> None:
    full = timm.create_model("test_convnext", pretrained=False, num_classes=7)
    torch.save(full.state_dict(), tmp_path / "full.pt")
    report = load_pretrained(create_backbone("test_convnext"), str(tmp_path / "full.pt"), "test_convnext")
    assert report["skipped"] == ["head.fc.bias", "head.fc.weight"]


def test_s3_round_trip(trained: torch.nn.Module, tmp_path, s3_bucket: str) -> None:
    torch.save(trained.state_dict(), tmp_path / "w.pth")
    uri = storage.join(s3_bucket, "weights/w.pth")
    storage.upload_file(tmp_path / "w.pth", uri)
    fresh = create_backbone("test_convnext")
    assert load_pretrained(fresh, uri, "test_convnext")["source"] == uri
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in _tensors(fresh).items())


def test_hub_weights_are_copied_with_their_preprocessing(monkeypatch: pytest.MonkeyPatch) -> None:
    # No network here: stand in for the hub with a model whose weights and pretrained_cfg are known.
    real_create = timm.create_model
    torch.manual_seed(2)
    hub = real_create("test_convnext", pretrained=False, num_classes=0, global_pool="")
    hub.pretrained_cfg = dict(hub.pretrained_cfg, mean=(0.1, 0.2, 0.3))
    calls = []

    def fake_create(name, pretrained=False, **kwargs):
        calls.append((name, pretrained, kwargs))
        return hub

    monkeypatch.setattr(timm, "create_model", fake_create)
    fresh = real_create("test_convnext", pretrained=False, num_classes=0, global_pool="")
    report = load_pretrained(fresh, True, "test_convnext")
    assert calls == [("test_convnext", True, {"num_classes": 0, "global_pool": ""})]
    assert report["source"] == "timm hub test_convnext"
    assert all(torch.equal(v, hub.state_dict()[k]) for k, v in fresh.state_dict().items())
    assert resolve_data_config({}, model=fresh)["mean"] == (0.1, 0.2, 0.3)
