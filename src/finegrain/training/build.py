"""Build phase of a train member: its fold's data and everything that trains on it.

    data:  manifest rows -> image cache (decoded once) -> datasets (train / eval preset) -> seeded loaders
    model: backbone + head, loss, AdamW + per-step warm-up/cosine, SWA (AveragedModel, SWALR) or an EMA

`build_member` returns a `TrainSetup`; `training.checkpoint` saves and restores its `Training`, the epoch loop
(`training.epoch`) advances it and `training.finish` turns it into the member's outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import SWALR, AveragedModel
from torch.utils.data import DataLoader

from finegrain.config import Config, SwaConfig, TrainConfig
from finegrain.data.loader import (
    CachedImageDataset,
    build_image_cache,
    default_cache_root,
    fold_rows,
    make_loader,
    resolve_image_uris,
)
from finegrain.data.transforms import DeviceNormalizer, EvalPreset, TrainPreset
from finegrain.training.loop import after_probe, warmup_cosine
from finegrain.training.runtime import cpu_threads, pick_device, seed_everything
from finegrain.training.swa import make_ema, make_swa, swa_start_epoch


@dataclass
class FoldData:
    """One fold's rows, each in manifest order, and their loaders (unreadable test rows get no loader rows)."""

    classes: list[str]
    aliases: dict
    train_rows: pd.DataFrame
    val_rows: pd.DataFrame
    test_rows: pd.DataFrame
    test_ok: pd.DataFrame  # the readable test rows; the unreadable ones get uniform predictions
    train_loader: DataLoader
    val_loader: DataLoader
    test_loader: DataLoader
    prepare: DeviceNormalizer
    mean: list[float]
    std: list[float]


@dataclass
class Training:
    """What the epoch loop changes and a checkpoint holds: weights, optimizer, schedules, averages, progress."""

    model: nn.Module
    embed: Callable[[torch.Tensor], torch.Tensor]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR
    steps_per_epoch: int
    swa: SwaConfig
    swa_start: int | None
    swa_model: AveragedModel | None
    ema_model: AveragedModel | None
    mix: dict | None
    swa_scheduler: SWALR | None = None
    start_epoch: int = 0
    global_step: int = 0
    history: list[dict] = field(default_factory=list)

    def in_swa(self, epoch: int) -> bool:
        """Whether `epoch` trains under SWALR and its end weights enter the SWA average."""
        return self.swa_start is not None and epoch >= self.swa_start

    def start_swa_schedule(self) -> SWALR:
        """SWALR on the optimizer; from then on the per-step base schedule is no longer stepped."""
        # Each group anneals to swa.lr in the proportion its base lr had (the backbone's scale holds under SWA).
        top = max(g["initial_lr"] for g in self.optimizer.param_groups)
        swa_lrs = [self.swa.lr * g["initial_lr"] / top for g in self.optimizer.param_groups]
        self.swa_scheduler = SWALR(self.optimizer, swa_lr=swa_lrs, anneal_epochs=self.swa.anneal_epochs)
        return self.swa_scheduler


@dataclass
class TrainSetup:
    """A member ready to train: its config, the settings resolved for its backbone, data and training state."""

    cfg: Config
    backbone: str
    fold: int
    image_size: int
    batch_size: int
    lr: float
    device: torch.device
    data: FoldData
    training: Training

    @property
    def label(self) -> str:
        return f"{self.backbone}/fold{self.fold}"


def build_member(cfg: Config, table: pd.DataFrame, class_info: dict, fold: int, backbone: str) -> TrainSetup:
    """Seed, then build member (backbone, fold): data from the manifest `table`, model and optimisation."""
    # timm comes in with finegrain.models: imported when a member is built, not with the step module.
    from finegrain.models import build_loss, build_model

    tc = cfg.train
    spec = tc.backbone(backbone)
    image_size, batch_size, lr = spec.image_size or tc.image_size, spec.batch_size or tc.batch_size, spec.lr or tc.lr
    device = pick_device(tc.device)
    if device.type == "cpu":  # pipeline.parallelism members train at once on this machine's cores
        torch.set_num_threads(cpu_threads(cfg.pipeline.parallelism))
    seed_everything(tc.seed, tc.deterministic)
    classes = list(class_info["classes"])
    rows = fold_rows(table, fold)  # before the model: a fold missing from the manifest fails first

    model = build_model(spec, tc.head, num_classes=len(classes)).to(device)
    if tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    mean, std = list(model.data_config["mean"]), list(model.data_config["std"])
    data = load_fold_data(cfg, classes, class_info["aliases"], rows, mean, std, image_size, batch_size, device)
    training = build_training(tc, model, build_loss(tc.loss), lr, len(data.train_loader))
    return TrainSetup(cfg, backbone, fold, image_size, batch_size, lr, device, data, training)


def load_fold_data(
    cfg: Config,
    classes: list[str],
    aliases: dict,
    rows: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    mean: list[float],
    std: list[float],
    image_size: int,
    batch_size: int,
    device: torch.device,
) -> FoldData:
    """(train, val, test) rows -> one image cache decoded once -> train/eval-preset datasets -> loaders."""
    tc = cfg.train
    train_rows, val_rows, test_rows = rows
    test_ok = test_rows[test_rows["status"] != "corrupt"]
    cached = pd.concat([train_rows, val_rows, test_ok])
    cache = build_image_cache(
        resolve_image_uris(cached["path"], cfg.data.uri),
        short_side=round(tc.cache_scale * image_size),
        cache_root=default_cache_root(tc.cache_dir),
        fingerprints=cached["sha256"].astype(str) if "sha256" in cached else None,
        workers=max(2, tc.num_workers),
    )
    n_tr, n_val = len(train_rows), len(val_rows)
    train_preset = TrainPreset(image_size, mean, std, scale=tc.crop_scale)
    train_set = CachedImageDataset(cache, range(n_tr), train_rows["class_index"], train_preset)
    eval_preset = EvalPreset(image_size, mean, std, resize=tc.eval_resize)
    val_set = CachedImageDataset(cache, range(n_tr, n_tr + n_val), val_rows["class_index"], eval_preset)
    test_set = CachedImageDataset(cache, range(n_tr + n_val, len(cached)), None, eval_preset)
    pin = device.type == "cuda"
    return FoldData(
        classes=classes,
        aliases=aliases,
        train_rows=train_rows,
        val_rows=val_rows,
        test_rows=test_rows,
        test_ok=test_ok,
        train_loader=make_loader(train_set, batch_size, tc.seed, True, tc.num_workers, pin),
        val_loader=make_loader(val_set, batch_size, tc.seed, False, tc.num_workers, pin),
        test_loader=make_loader(test_set, batch_size, tc.seed, False, tc.num_workers, pin),
        prepare=DeviceNormalizer(mean, std, device, tc.channels_last),
        mean=mean,
        std=std,
    )


def build_training(tc: TrainConfig, model: nn.Module, loss_fn, lr: float, train_batches: int) -> Training:
    """AdamW + per-step warm-up/cosine; SWALR takes over (and the cosine stops) at swa_start; or an EMA.

    The backbone's groups learn at lr x backbone_lr_scale, and during the linear-probe warm-up
    (`linear_probe_epochs`) at 0, then follow a warm-up/cosine over the remaining steps."""
    groups = model.param_groups(lr, tc.weight_decay, tc.backbone_lr_scale)
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=tc.weight_decay)
    steps_per_epoch = min(train_batches, tc.max_steps_per_epoch or train_batches)
    total, warmup = tc.epochs * steps_per_epoch, round(tc.warmup_epochs * steps_per_epoch)
    head_factor = warmup_cosine(total, warmup)
    probe = round(tc.linear_probe_epochs * steps_per_epoch)
    backbone_factor = after_probe(probe, warmup_cosine(total - probe, warmup)) if probe else head_factor
    scheduler = LambdaLR(
        optimizer, [backbone_factor if g["name"].startswith("backbone") else head_factor for g in groups]
    )
    swa_start = swa_start_epoch(tc.epochs, tc.swa.start_epoch) if tc.swa.enabled else None
    swa_model = make_swa(model) if swa_start is not None else None
    ema_model = make_ema(model, tc.ema_decay) if tc.ema else None
    return Training(
        model=model,
        embed=torch.compile(model.embed) if tc.compile else model.embed,
        loss_fn=loss_fn,
        optimizer=optimizer,
        scheduler=scheduler,
        steps_per_epoch=steps_per_epoch,
        swa=tc.swa,
        swa_start=swa_start,
        swa_model=swa_model,
        ema_model=ema_model,
        mix=tc.mix.model_dump() if tc.mix.prob > 0 else None,
    )
