"""Model package: timm backbone factory, pooling, heads (linear, ArcFace, AdaFace), losses, pretrained weights.

model = build_model(spec, cfg.train.head, num_classes)   # FineGrainModel
loss_fn = build_loss(cfg.train.loss)
logits = model(images, labels)                            # labels required in training for margin heads
"""

from finegrain.models.heads import HEADS, MARGIN_HEADS, AdaFaceHead, ArcFaceHead, LinearHead, build_head
from finegrain.models.losses import CeFocalLoss, build_loss, focal_loss
from finegrain.models.model import FineGrainModel, build_model, create_backbone
from finegrain.models.pooling import GeM, build_pooling
from finegrain.models.weights import PACKAGED_WEIGHTS, load_pretrained, packaged_weights_path, read_state_dict

__all__ = [
    "HEADS",
    "MARGIN_HEADS",
    "PACKAGED_WEIGHTS",
    "AdaFaceHead",
    "ArcFaceHead",
    "CeFocalLoss",
    "FineGrainModel",
    "GeM",
    "LinearHead",
    "build_head",
    "build_loss",
    "build_model",
    "build_pooling",
    "create_backbone",
    "focal_loss",
    "load_pretrained",
    "packaged_weights_path",
    "read_state_dict",
]
