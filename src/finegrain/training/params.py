"""The params a member's MLflow run shows: the ~30 settings that tell members apart, not the whole config.

Logging every config key (~100 params per member, most of them the same for every member and irrelevant to
training: storage, pipeline, submit settings) buries the few that matter in the MLflow UI's compare view. The
resolved config goes to the run whole anyway, as its `config.yaml` artifact.
"""

from __future__ import annotations

from finegrain.config import flatten
from finegrain.training.build import TrainSetup

# Under train.*, as the config names them; image size, batch size and lr come resolved for the backbone.
SETTINGS = (
    "epochs", "weight_decay", "warmup_epochs", "head.name", "head.embedding_dim", "head.pooling", "head.margin",
    "loss.ce_weight", "loss.focal_weight", "loss.focal_gamma", "loss.label_smoothing", "mix.mixup_alpha",
    "mix.cutmix_alpha", "mix.prob", "swa.enabled", "swa.lr", "ema", "tta", "seed", "eval_resize",
)  # fmt: skip


def member_params(setup: TrainSetup, manifest_digest: str) -> dict[str, object]:
    """{param: value} of member `setup` (30 entries), keys as the config names them (`train.lr`)."""
    train = flatten(setup.cfg.train.model_dump(mode="json"), "train")
    params: dict[str, object] = {f"train.{k}": train[f"train.{k}"] for k in SETTINGS}
    data = setup.data
    params.update({
        "backbone": setup.backbone, "fold": setup.fold, "pretrained": setup.cfg.train.backbone(setup.backbone).pretrained,
        "train.image_size": setup.image_size, "train.batch_size": setup.batch_size, "train.lr": setup.lr,
        "n_classes": len(data.classes), "n_train": len(data.train_rows), "n_val": len(data.val_rows),
        "manifest": manifest_digest,
    })  # fmt: skip
    return params
