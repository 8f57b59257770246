"""Benchmark the train step's data path + step against bare timm, in one run on one device.

    python bench/train_throughput.py                       # GPU: convnext_tiny @384, batch 64 (goal: ratio >= 0.95)
    python bench/train_throughput.py --compile --json runs/bench/train.json   # runs/ is git-ignored
    python bench/train_throughput.py --model test_convnext --img-size 64 --batch-size 16 --steps 6   # CPU smoke

Prints two img/s figures and their ratio:
  bare timm   timm model, random tensors already on the device, same batch/res/AMP/channels_last, fwd+bwd+step
  finegrain   real 600x450 JPEGs (written here to a temp dir) -> decoded-once cache -> TrainPreset
              (albumentations, uint8) -> DataLoader workers -> GPU normalise -> our model + AdaFace head +
              CE/focal loss through `train_one_epoch` (grad clipping included, as in the recipe)
Defaults depend on the device (tiny on CPU). A watchdog stops the run after --timeout seconds and still prints
and writes what was measured; DataLoader workers that stall raise after --worker-timeout seconds.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2
import numpy as np
import torch


def parse_args() -> argparse.Namespace:
    gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="convnext_tiny" if gpu else "test_convnext")
    p.add_argument("--img-size", type=int, default=384 if gpu else 64)
    p.add_argument("--batch-size", type=int, default=64 if gpu else 16)
    p.add_argument("--steps", type=int, default=50 if gpu else 6, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=10 if gpu else 2, help="untimed steps first (compile, cudnn)")
    p.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1) if gpu else 2)
    p.add_argument("--images", type=int, default=0, help="JPEGs to write (at least (warmup+steps+1)*batch)")
    p.add_argument("--classes", type=int, default=396)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--cache-scale", type=float, default=1.15)
    p.add_argument("--timeout", type=float, default=900 if gpu else 300)
    p.add_argument("--worker-timeout", type=float, default=120)
    p.add_argument("--json", type=Path, default=None, help="write the results here as JSON")
    return p.parse_args()


def bare_timm(args, device: torch.device) -> float:
    """img/s of a plain timm training step on random on-device tensors."""
    import timm

    model = timm.create_model(args.model, pretrained=False, num_classes=args.classes).to(device)
    model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if args.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, args.classes, (args.batch_size,), device=device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = torch.nn.functional.cross_entropy(step_model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - t0)


def write_jpegs(directory: Path, n: int, distinct: int = 32) -> list[str]:
    """n 600x450 photo-like JPEGs (smooth colour fields + texture), the Hecto size; `distinct` encodings are
    reused across files (decode cost is what matters, and encoding thousands of images would dominate)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:450, 0:600].astype(np.float32)
    encoded = []
    for _ in range(min(n, distinct)):
        base = rng.uniform(0, 255, 3) + 60 * np.sin(xx[..., None] / rng.uniform(20, 90) + rng.uniform(0, 6, 3))
        base += 40 * np.cos(yy[..., None] / rng.uniform(15, 70))
        img = np.clip(base + rng.normal(0, 8, (450, 600, 3)), 0, 255).astype(np.uint8)
        encoded.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    paths = []
    for i in range(n):
        path = directory / f"img_{i:05d}.jpg"
        path.write_bytes(encoded[i % len(encoded)])
        paths.append(str(path))
    return paths


def finegrain_end_to_end(args, device: torch.device, tmp: Path, results: dict) -> float:
    """img/s of finegrain's own path: JPEG cache -> augmentation -> loader -> model + head + loss step."""
    from finegrain.config import BackboneSpec, HeadConfig, LossConfig
    from finegrain.data.loader import CachedImageDataset, build_image_cache, make_loader
    from finegrain.data.transforms import DeviceNormalizer, TrainPreset
    from finegrain.models import build_loss, build_model
    from finegrain.training.loop import train_one_epoch

    t0 = time.perf_counter()
    (tmp / "jpegs").mkdir()
    paths = write_jpegs(tmp / "jpegs", max(args.images, (args.warmup + args.steps + 1) * args.batch_size))
    results["jpeg_write_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    short = round(args.cache_scale * args.img_size)
    cache = build_image_cache(paths, short, tmp / "cache", workers=max(2, args.workers))
    results["cache_build_s"] = round(time.perf_counter() - t0, 2)
    results["cache_img_per_s"] = round(len(paths) / max(results["cache_build_s"], 1e-9), 1)
    print(f"cache: {len(paths)} JPEGs 600x450 -> short side {short}px in {results['cache_build_s']} s "
          f"({results['cache_img_per_s']} img/s decode+resize, once per manifest)", flush=True)  # fmt: skip

    model = build_model(BackboneSpec(name=args.model), HeadConfig(name="adaface"), args.classes).to(device)
    model = model.to(memory_format=torch.channels_last)
    mean, std = model.data_config["mean"], model.data_config["std"]
    labels = np.random.default_rng(0).integers(0, args.classes, len(paths))
    ds = CachedImageDataset(cache, range(len(paths)), labels, TrainPreset(args.img_size, mean, std))
    loader = make_loader(
        ds, args.batch_size, seed=0, train=True, num_workers=args.workers, pin_memory=device.type == "cuda",
        timeout=args.worker_timeout if args.workers > 0 else 0,
    )  # fmt: skip
    prepare = DeviceNormalizer(mean, std, device, channels_last=True)
    loss_fn = build_loss(LossConfig())
    opt = torch.optim.AdamW(model.param_groups(1e-4, 0.05), lr=1e-4)
    embed = torch.compile(model.embed) if args.compile else model.embed
    # One epoch holds warm-up + timed steps: a new epoch's first batch waits for the workers, a stall that a
    # real 26k-image epoch amortises but a small benchmark set would not.
    timed_from: list[float] = []

    def mark(step: int, loss: torch.Tensor) -> None:
        if step == args.warmup:
            sync(device)
            timed_from.append(time.perf_counter())

    loader.sampler.set_epoch(0)
    stats = train_one_epoch(
        model, embed, loss_fn, opt, None, loader, prepare, amp=True, grad_clip=1.0, mix=None,
        mix_generator=torch.Generator().manual_seed(0), max_steps=args.warmup + args.steps, progress=mark,
    )  # fmt: skip
    seconds = time.perf_counter() - timed_from[0]  # train_one_epoch synchronises before it returns
    return (stats["steps"] - args.warmup) * args.batch_size / seconds


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    args = parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    results: dict = {"device": name, **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    results["amp"] = "bf16" if device.type == "cuda" else "fp32"

    def on_timeout(signum, frame):
        raise TimeoutError(f"benchmark exceeded --timeout {args.timeout:.0f} s")

    signal.signal(signal.SIGALRM, on_timeout)
    signal.alarm(int(args.timeout))
    faulthandler.dump_traceback_later(args.timeout + 60, exit=True)  # if even the alarm cannot get through
    print(f"device: {name} | {args.model} @{args.img_size} batch {args.batch_size} | {results['amp']} | "
          f"channels_last | compile={args.compile} | workers={args.workers}", flush=True)  # fmt: skip
    status = 0
    try:
        results["bare_timm_img_per_s"] = round(bare_timm(args, device), 1)
        print(f"bare timm (synthetic tensors on device): {results['bare_timm_img_per_s']} img/s", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        with tempfile.TemporaryDirectory(prefix="finegrain-bench-") as tmp:
            results["finegrain_img_per_s"] = round(finegrain_end_to_end(args, device, Path(tmp), results), 1)
        print(f"finegrain end to end (JPEG cache -> augment -> {args.workers} workers -> model+adaface+loss): "
              f"{results['finegrain_img_per_s']} img/s", flush=True)  # fmt: skip
        results["ratio"] = round(results["finegrain_img_per_s"] / results["bare_timm_img_per_s"], 3)
        goal = "goal >= 0.95 on a GPU" if device.type == "cuda" else "CPU smoke run: ratio not meaningful"
        print(f"ratio finegrain / bare timm: {results['ratio']} ({goal})", flush=True)
    except TimeoutError as exc:
        results["error"] = str(exc)
        print(f"TIMEOUT: {exc}", flush=True)
        status = 124
    finally:
        signal.alarm(0)
        faulthandler.cancel_dump_traceback_later()
        if device.type == "cuda":
            results["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2))
            print(f"results written to {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
