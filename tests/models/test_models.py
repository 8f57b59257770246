"""FineGrainModel and heads: shapes over the head registry and two backbones, margins on the target logit only
and only in training, AdaFace's EMA statistics, overfitting a tiny batch, parameter groups, compile-ability."""

from __future__ import annotations

import math

import pytest
import torch

from finegrain.config import BackboneSpec, HeadConfig, LossConfig
from finegrain.models import HEADS, MARGIN_HEADS, AdaFaceHead, build_head, build_loss, build_model

BACKBONES = ["test_convnext", "resnet10t"]
C, D = 5, 16


def _model(head: str, backbone: str = "test_convnext", **head_kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(BackboneSpec(name=backbone), HeadConfig(name=head, embedding_dim=D, **head_kw), C)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("head", sorted(HEADS))
def test_shapes_and_surface(backbone: str, head: str) -> None:
    model = _model(head, backbone)
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.tensor([0, 1, 2, 3])
    assert model(x, y).shape == (4, C) and model(x, y).dtype == torch.float32
    assert model.embed(x).shape == (4, D)
    assert (model.num_classes, model.embedding_dim, model.backbone_name) == (C, D, backbone)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (4, C)
    cfg = model.data_config
    assert {"mean", "std", "input_size", "interpolation", "crop_pct"} <= set(cfg)


def test_transformer_tokens_are_pooled() -> None:
    model = build_model(
        BackboneSpec(name="test_vit"), HeadConfig(name="linear", embedding_dim=D, pooling="avg"), C
    )
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 160, 160)).shape == (2, C)


@pytest.mark.parametrize("head", MARGIN_HEADS)
def test_margin_changes_only_the_target_logit_in_training(head: str) -> None:
    torch.manual_seed(0)
    module = build_head(HeadConfig(name=head, embedding_dim=D), C)
    emb, labels = torch.randn(6, D) * 10, torch.tensor([0, 1, 2, 3, 4, 0])
    module.eval()
    plain = module(emb)
    assert torch.equal(module(emb, labels), plain)  # labels at validation: still no margin
    module.train()
    margined = module(emb, labels)
    target = torch.nn.functional.one_hot(labels, C).bool()
    assert torch.allclose(margined[~target], plain[~target])
    assert (margined[target] < plain[target] - 1e-3).all()  # a margin makes the target harder
    assert plain.abs().max() <= module.scale  # eval logits are s*cos, bounded by s


def test_arcface_target_logit_is_s_cos_theta_plus_m() -> None:
    module = build_head(HeadConfig(name="arcface", embedding_dim=D, scale=30.0, margin=0.3), C).train()
    emb, labels = torch.randn(4, D), torch.tensor([1, 2, 3, 4])
    cos = module.eval()(emb)[torch.arange(4), labels] / 30.0
    got = module.train()(emb, labels)[torch.arange(4), labels]
    assert torch.allclose(got, 30.0 * torch.cos(torch.acos(cos) + 0.3), atol=1e-4)


def _reference_adaface(head: AdaFaceHead, emb: torch.Tensor, labels: torch.Tensor, mean, std) -> torch.Tensor:
    """mk-minchul/AdaFace head.py's formula, whole matrix at once, given already-updated batch statistics."""
    norms = torch.norm(emb, 2, 1, True)
    kernel = head.kernel.t() / torch.norm(head.kernel.t(), 2, 0, True)
    cosine = torch.mm(emb / norms, kernel).clamp(-1 + head.eps, 1 - head.eps)
    safe = torch.clip(norms, min=0.001, max=100)
    scaler = torch.clip((safe - mean) / (std + head.eps) * head.h, -1, 1)
    onehot = torch.zeros_like(cosine).scatter_(1, labels.reshape(-1, 1), 1.0)
    theta_m = torch.clip(
        cosine.acos() + onehot * (head.margin * scaler * -1), min=head.eps, max=math.pi - head.eps
    )
    return (theta_m.cos() - onehot * (head.margin + head.margin * scaler)) * head.scale


def test_adaface_matches_reference_and_tracks_norm_statistics() -> None:
    torch.manual_seed(0)
    head = build_head(HeadConfig(name="adaface", embedding_dim=D, t_alpha=0.1), C)
    assert (head.batch_mean.item(), head.batch_std.item()) == (20.0, 100.0)
    emb, labels = torch.randn(8, D) * torch.linspace(1, 40, 8)[:, None], torch.arange(8) % C
    norms = emb.norm(dim=1).clip(0.001, 100)
    mean = 0.1 * norms.mean() + 0.9 * 20.0
    std = 0.1 * norms.std() + 0.9 * 100.0
    got = head.train()(emb, labels)
    assert head.batch_mean.item() == pytest.approx(mean.item(), rel=1e-5)
    assert head.batch_std.item() == pytest.approx(std.item(), rel=1e-5)
    assert torch.allclose(got, _reference_adaface(head, emb, labels, mean, std), atol=1e-3)

    before = (head.batch_mean.clone(), head.batch_std.clone())
    head(emb, labels, update_stats=False)  # MixUp's second call on the same embedding
    head.eval()(emb, labels)
    with torch.no_grad():
        head.train()(emb)
    head(emb[:1], labels[:1])  # a batch of one: mean moves, the (NaN) std must not
    assert torch.equal(head.batch_std, before[1]) and torch.isfinite(head.batch_mean).all()
    assert head.batch_mean.item() != before[0].item()


@pytest.mark.parametrize("head", MARGIN_HEADS)
def test_margin_head_refuses_training_forward_without_labels(head: str) -> None:
    model = _model(head).train()
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match="without labels"):
        model(x)
    with torch.no_grad():
        assert model(x).shape == (2, C)  # e.g. BN re-estimation passes


@pytest.mark.parametrize("head", sorted(HEADS))
def test_tiny_batch_overfits(head: str) -> None:
    model = _model(head, scale=16.0)
    x, y = torch.randn(8, 3, 32, 32), torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    optimizer = torch.optim.AdamW(model.param_groups(3e-3, 0.0))
    loss_fn = build_loss(LossConfig())
    losses = []
    for _ in range(12):
        optimizer.zero_grad()
        loss = loss_fn(model(x, y), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_param_groups_cover_every_parameter_once() -> None:
    model = _model("adaface", pooling="gem")
    groups = model.param_groups(1e-3, 0.05, backbone_lr_scale=0.1)
    seen = [id(p) for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters()) and len(seen) == len(set(seen))
    by_name = {g["name"]: g for g in groups}
    assert by_name["backbone"]["lr"] == pytest.approx(1e-4) and by_name["head"]["lr"] == pytest.approx(1e-3)
    assert all(p.ndim <= 1 for g in groups if g["weight_decay"] == 0 for p in g["params"])
    assert any(p is model.pool.p for p in by_name["head_no_decay"]["params"])


def test_unknown_names_list_the_choices() -> None:
    with pytest.raises(ValueError, match="adaface"):
        build_head(HeadConfig.model_construct(name="cosface", embedding_dim=D), C)
    with pytest.raises(ValueError, match="no_such_net"):
        build_model(BackboneSpec(name="no_such_net"), HeadConfig(), C)


def test_compiles_without_graph_breaks() -> None:
    model = _model("adaface").to(memory_format=torch.channels_last)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    assert compiled(x, torch.tensor([0, 1, 2, 3])).shape == (4, C)
    model.eval()
    assert compiled(x).shape == (4, C)
