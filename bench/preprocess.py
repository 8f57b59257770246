"""Near-duplicate benchmark: finegrain's hashing + search + confirmation vs imagededup's PHash, same images, same cores.

    python bench/preprocess.py --n 2000 --workers 2

imagededup pulls torch/tensorflow-era pins; keep it out of .venv. Install it beside the benchmark only:
    pip install --no-deps --target /tmp/bench-imagededup imagededup==0.3.3.post2 PyWavelets==1.9.0
and pass --imagededup-path /tmp/bench-imagededup (its hashing only needs numpy/scipy/PIL/pywt, already here).

Planted: a fraction of originals get a copy (re-encoded q60, resized 0.7, or cropped 3-6 % per edge) and another
fraction get a look-alike (same car and pose, other decal/background/wheel angle) that must NOT be merged.
Prints images/s (hash + search, wall clock) and recall of planted copies / false merges of look-alikes for both.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_images(root: Path, n: int, seed: int = 0) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    from finegrain.data.sample import CLASS_SPECS
    from finegrain.data.synthetic_cars import render, sample_scene, vary_details

    rng = np.random.default_rng(seed)
    specs = list(CLASS_SPECS.values())
    copies, lookalikes, k = [], [], 0

    def save(img: Image.Image, quality: int = 90) -> str:
        nonlocal k
        path = root / f"img{k:05d}.jpg"
        k += 1
        img.save(path, "JPEG", quality=quality)
        return path.name

    while k < n:
        scene = sample_scene(specs[k % len(specs)], rng)
        img = render(scene)
        name = save(img)
        r = rng.random()
        if r < 0.15:
            kind = ["reencode", "resize", "crop"][int(rng.integers(3))]
            if kind == "reencode":
                copy = save(img, 60)
            elif kind == "resize":
                copy = save(img.resize((round(img.width * 0.7), round(img.height * 0.7)), Image.Resampling.LANCZOS))
            else:
                w, h = img.size
                left, top, right, bottom = (float(f) for f in rng.uniform(0.03, 0.06, 4))
                copy = save(img.crop((round(w * left), round(h * top), round(w * (1 - right)), round(h * (1 - bottom)))))
            copies.append((name, copy))
        elif r < 0.25:
            lookalikes.append((name, save(render(vary_details(scene, rng)))))
    return copies, lookalikes


def score(pairs: set[frozenset], copies, lookalikes) -> tuple[float, int]:
    recall = sum(frozenset(p) in pairs for p in copies) / max(1, len(copies))
    return recall, sum(frozenset(p) in pairs for p in lookalikes)


def run_finegrain(root: Path, workers: int, distance: int) -> set[frozenset]:
    import pandas as pd

    from finegrain.config import Config
    from finegrain.steps.preprocess import _parallel, find_duplicates
    from finegrain.data.validate import scan_image
    import functools

    cfg = Config()
    cfg.preprocess.workers, cfg.preprocess.near_dup_distance = workers, distance
    paths = sorted(str(p) for p in root.glob("*.jpg"))
    scans = _parallel(functools.partial(scan_image, max_pixels=cfg.preprocess.max_pixels, min_side=1), paths,
                      workers, "hashing")  # fmt: skip
    thumbs = [s.pop("thumb") for s in scans]
    table = pd.concat([pd.DataFrame({"path": paths}), pd.DataFrame(scans)], axis=1)
    groups, _ = find_duplicates(table, thumbs, cfg)
    names = [Path(p).name for p in paths]
    out = set()
    for g in set(groups.tolist()) - {-1}:
        members = [names[i] for i in np.nonzero(groups == g)[0]]
        out |= {frozenset((a, b)) for a in members for b in members if a < b}
    return out


def run_imagededup(root: Path, workers: int, distance: int) -> set[frozenset]:
    from imagededup.methods import PHash

    dups = PHash(verbose=False).find_duplicates(image_dir=str(root), max_distance_threshold=distance,
                                                num_enc_workers=workers, num_dist_workers=workers)  # fmt: skip
    return {frozenset((a, b)) for a, bs in dups.items() for b in bs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--distance", type=int, default=10)
    ap.add_argument("--imagededup-path", default="/tmp/bench-imagededup")
    args = ap.parse_args()
    sys.path.append(args.imagededup_path)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        copies, lookalikes = make_images(root, args.n)
        n = len(list(root.glob("*.jpg")))
        print(f"{n} images, {len(copies)} planted copies, {len(lookalikes)} look-alike pairs, {args.workers} workers")
        results = {}
        for name, fn in (("finegrain", run_finegrain), ("imagededup PHash", run_imagededup)):
            start = time.perf_counter()
            pairs = fn(root, args.workers, args.distance)
            seconds = time.perf_counter() - start
            recall, false = score(pairs, copies, lookalikes)
            results[name] = n / seconds
            print(f"{name:>18}: {n / seconds:8.1f} img/s  recall {recall:.3f}  false merges {false}/{len(lookalikes)}")
        print(f"speed ratio finegrain / imagededup: {results['finegrain'] / results['imagededup PHash']:.2f}x")


if __name__ == "__main__":
    main()
