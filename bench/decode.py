"""Benchmark the training cache's decode: finegrain's one decoder (PIL, finegrain.data.decode) vs OpenCV.

    python bench/decode.py                     # 400 renders at 600x450 (Hecto's size), 1 and 2 threads
    python bench/decode.py --n 100 --side 1920 # larger photos

Training used to decode with OpenCV (cv2.imdecode + BGR->RGB); since the decoder was unified it decodes with
the same PIL path preprocess validates with (finegrain.data.decode.decode_image). Both sides here read the
same JPEG bytes from memory and resize to the cache's short side with the cache's own resize, so the ratio is
the decode itself. Printed: img/s of each, the ratio finegrain / OpenCV (> 1: finegrain faster), and the mean
absolute pixel difference between the two decodes (JPEG decoders may round differently).
"""

from __future__ import annotations

import argparse
import io
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np


def make_jpegs(n: int, side: int, seed: int = 0) -> list[bytes]:
    from PIL import Image

    from finegrain.sample.car_specs import CLASS_SPECS, sample_scene
    from finegrain.sample.synthetic_cars import render

    rng = np.random.default_rng(seed)
    specs = list(CLASS_SPECS.values())
    out = []
    for k in range(n):
        img = render(sample_scene(specs[k % len(specs)], rng))
        img = img.resize((side, round(side * img.height / img.width)), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def opencv_decode(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def timed(fn, blobs: list[bytes], threads: int, short_side: int) -> tuple[float, list[np.ndarray]]:
    from finegrain.data.loader import resize_short_side

    def one(data: bytes) -> np.ndarray:
        return resize_short_side(fn(data), short_side)

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        images = list(pool.map(one, blobs))
    return len(blobs) / (time.perf_counter() - start), images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--side", type=int, default=600, help="long side of the JPEGs")
    parser.add_argument("--short-side", type=int, default=288, help="the cache's short side (cache_scale x size)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from finegrain.data.decode import decode_image

    cv2.setNumThreads(1)  # as in the cache's worker threads: parallelism comes from the thread pool
    blobs = make_jpegs(args.n, args.side)
    print(f"{args.n} JPEGs, {args.side} px long side, resized to short side {args.short_side}")
    print(f"{'threads':>7s} {'finegrain img/s':>16s} {'OpenCV img/s':>13s} {'ratio':>6s}")
    for threads in (1, 2):
        ours, theirs = [], []
        for _ in range(args.repeat):  # alternate, so background load hits both alike
            ours.append(timed(decode_image, blobs, threads, args.short_side))
            theirs.append(timed(opencv_decode, blobs, threads, args.short_side))
        a, b = float(np.median([r for r, _ in ours])), float(np.median([r for r, _ in theirs]))
        print(f"{threads:7d} {a:16.0f} {b:13.0f} {a / b:6.2f}")
    diff = np.mean([np.abs(x.astype(int) - y.astype(int)).mean() for x, y in zip(ours[-1][1], theirs[-1][1])])
    print(f"mean |finegrain - OpenCV| per pixel: {diff:.2f} (of 255)")


if __name__ == "__main__":
    main()
