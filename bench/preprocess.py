"""Near-duplicate benchmark: finegrain's hashing + search (+ confirmation) vs imagededup's PHash, same images and cores.

    python bench/preprocess.py --n 4000 --workers 2 --side 600  # 600x450 JPEGs, the size of Hecto's photos
    python bench/preprocess.py --n 4000 --workers 2             # the renderer's own 192x144 pictures

imagededup pulls torch/tensorflow-era pins; keep it out of .venv. Install it beside the benchmark only:
    pip install --no-deps --target /tmp/bench-imagededup imagededup==0.3.3.post2 PyWavelets==1.9.0
and put that directory on PYTHONPATH (`make bench-preprocess` does: IMAGEDEDUP_DIR, default /tmp/bench-imagededup;
its hashing only needs numpy/scipy/PIL/pywt, already here).

Planted: a fraction of originals get a copy (re-encoded q60, resized 0.7, or cropped 3-6 % per edge) and another
fraction get a look-alike (same car and pose, other decal/background/wheel angle) that must NOT be merged.
Prints one table, medians of --repeat alternating runs:
- finegrain hash + search vs imagededup PHash (hash + search): like for like, both return every pair within the
  Hamming distance; images/s, recall of the planted copies, look-alike pairs among what each returns.
- finegrain hash + search + pixel confirmation: the whole near-duplicate path of the preprocess step, which
  imagededup has no counterpart for; its look-alike column counts false merges.
Both libraries are imported before timing (imagededup's import loads torch, a per-process cost unrelated to the
image count). finegrain's time includes starting its worker pool; imagededup's includes its fork pools.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def make_images(
    root: Path, n: int, seed: int = 0, side: int = 0
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    from finegrain.sample.car_specs import CLASS_SPECS, sample_scene, vary_details
    from finegrain.sample.synthetic_cars import render

    rng = np.random.default_rng(seed)
    specs = list(CLASS_SPECS.values())
    copies, lookalikes, k = [], [], 0

    def save(img: Image.Image, quality: int = 90) -> str:
        nonlocal k
        path = root / f"img{k:05d}.jpg"
        k += 1
        img.save(path, "JPEG", quality=quality)
        return path.name

    def draw(scene) -> Image.Image:
        img = render(scene)
        # Upscaled renders stand in for Hecto-sized photos (decode cost grows with pixels, as it does there).
        return (
            img.resize((side, round(side * img.height / img.width)), Image.Resampling.LANCZOS)
            if side
            else img
        )

    while k < n:
        scene = sample_scene(specs[k % len(specs)], rng)
        img = draw(scene)
        name = save(img)
        r = rng.random()
        if r < 0.15:
            kind = ["reencode", "resize", "crop"][int(rng.integers(3))]
            if kind == "reencode":
                copy = save(img, 60)
            elif kind == "resize":
                copy = save(
                    img.resize((round(img.width * 0.7), round(img.height * 0.7)), Image.Resampling.LANCZOS)
                )
            else:
                w, h = img.size
                left, top, right, bottom = (float(f) for f in rng.uniform(0.03, 0.06, 4))
                copy = save(
                    img.crop(
                        (round(w * left), round(h * top), round(w * (1 - right)), round(h * (1 - bottom)))
                    )
                )
            copies.append((name, copy))
        elif r < 0.25:
            lookalikes.append((name, save(draw(vary_details(scene, rng)))))
    return copies, lookalikes


def score(pairs: set[frozenset], copies, lookalikes) -> tuple[float, int]:
    recall = sum(frozenset(p) in pairs for p in copies) / max(1, len(copies))
    return recall, sum(frozenset(p) in pairs for p in lookalikes)


def _pairs_of(groups: np.ndarray, names: list[str]) -> set[frozenset]:
    out = set()
    for g in set(groups.tolist()) - {-1}:
        members = [names[i] for i in np.nonzero(groups == g)[0]]
        out |= {frozenset((a, b)) for a in members for b in members if a < b}
    return out


def run_finegrain(root: Path, workers: int, distance: int) -> dict:
    """The preprocess step's own path: one worker pool, scan (validate + sha256 + pHashes), search, confirm.

    Returns the pairs after search (what imagededup's PHash returns: every pair within the distance) and after
    the pixel confirmation (what preprocess merges), with the time of each phase.
    """
    from finegrain.config import Config
    from finegrain.preprocess.dedup.hashing import connected_groups
    from finegrain.steps.preprocess import confirm_candidates, find_candidates, scan_table, worker_pool

    cfg = Config()
    cfg.preprocess.workers = workers  # the search ranks neighbours: no distance to set (imagededup's only)
    paths = sorted(str(p) for p in root.glob("*.jpg"))
    names = [Path(p).name for p in paths]
    t0 = time.perf_counter()
    with worker_pool(workers) as pool:
        table, thumbs = scan_table(pd.DataFrame({"path": paths}), cfg, pool)
        t1 = time.perf_counter()
        edges, candidates = find_candidates(table, cfg, thumbs)
        t2 = time.perf_counter()
        # dup groups: the copies preprocess drops; fold groups: every confirmed link, kept in one fold or dropped.
        dropped, groups, pairs = confirm_candidates(table, thumbs, edges, candidates, cfg, pool)
    t3 = time.perf_counter()
    rules = {frozenset((names[a], names[b])): rule for a, b, rule in zip(pairs.a, pairs.b, pairs.rule) if rule}
    searched = _pairs_of(connected_groups(len(paths), edges + [(i, j) for i, j, _ in candidates]), names)
    return {
        "searched": searched, "confirmed": _pairs_of(groups, names), "dropped": _pairs_of(dropped, names),
        "hash s": t1 - t0, "search s": t2 - t1,
        "confirm s": t3 - t2, "candidates": len(candidates), "rules": rules,
    }  # fmt: skip


def run_imagededup(root: Path, workers: int, distance: int) -> dict:
    """imagededup's PHash with default settings: encode_images then find_duplicates on the encodings.

    That is what PHash.find_duplicates(image_dir=...) does internally; split here only to time the two phases.
    Both phases use multiprocessing.Pool (fork, imap chunksize 100) with the worker counts given.
    """
    from imagededup.methods import PHash

    phash = PHash(verbose=False)
    t0 = time.perf_counter()
    encodings = phash.encode_images(image_dir=str(root), num_enc_workers=workers)
    t1 = time.perf_counter()
    dups = phash.find_duplicates(
        encoding_map=encodings, max_distance_threshold=distance, num_dist_workers=workers
    )
    t2 = time.perf_counter()
    return {"searched": {frozenset((a, b)) for a, bs in dups.items() for b in bs}, "hash s": t1 - t0,
            "search s": t2 - t1}  # fmt: skip


def _table_run(fn, key: str, root: Path, workers: int, distance: int) -> dict:
    """One run of `fn` as dedup_table.run_table reads it: the pairs under `key`, the check's rules and dropped
    pairs (finegrain only), and the seconds of every phase together."""
    r = fn(root, workers, distance)
    return {"pairs": r[key], "rules": r.get("rules", {}), "dropped": r.get("dropped"),
            "seconds": sum(v for k, v in r.items() if k.endswith(" s"))}  # fmt: skip


IMAGEDEDUP_DIR = "/tmp/bench-imagededup"  # the Makefile's default; PYTHONPATH says where it really is


def import_imagededup() -> None:
    """Import imagededup from the environment (PYTHONPATH), or exit with the one line that installs it."""
    try:
        import imagededup.methods  # noqa: F401
    except ImportError as err:
        raise SystemExit(
            f"bench/preprocess.py needs imagededup ({err}); install it beside the benchmark: "
            f"pip install --no-deps --target {IMAGEDEDUP_DIR} imagededup==0.3.3.post2 PyWavelets==1.9.0 "
            f"(make bench-preprocess puts IMAGEDEDUP_DIR={IMAGEDEDUP_DIR} on PYTHONPATH)"
        ) from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--distance", type=int, default=10)
    ap.add_argument(
        "--side", type=int, default=0, help="long side of the saved JPEGs (0: the renderer's 192x144)"
    )
    ap.add_argument(
        "--repeat", type=int, default=3, help="timed runs per method, alternating; median reported"
    )
    ap.add_argument("--photos", action="store_true", help="real photos, recall per kind of copy (dedup_table.py)")
    args = ap.parse_args()
    if args.photos:  # before anything slow: the photos are the prerequisite a new machine lacks
        from bench.dedup_photos import INSTALL, missing

        if missing():
            raise SystemExit(f"bench-dedup needs real photos from Debian packages ({', '.join(missing())} "
                             f"missing): {INSTALL}")  # fmt: skip
    warnings.filterwarnings("ignore", module="imagededup")
    logging.disable(logging.INFO)  # imagededup logs every phase at INFO
    # Import both libraries before any clock starts: imagededup's import pulls in torch (~4 s), which is a fixed
    # cost of the process, not of hashing images; timing it would flatter finegrain.
    import_imagededup()
    import finegrain.steps.preprocess  # noqa: F401

    if args.photos:
        from bench.dedup_table import run_table

        run_table({"finegrain (hash + search + confirmation)": functools.partial(_table_run, run_finegrain, "confirmed"),
                   "imagededup PHash (hash + search)": functools.partial(_table_run, run_imagededup, "searched")},
                  args.workers, args.distance, args.repeat)  # fmt: skip
        return
    methods = {"finegrain": run_finegrain, "imagededup PHash": run_imagededup}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        copies, lookalikes = make_images(root, args.n, side=args.side)
        n = len(list(root.glob("*.jpg")))
        size = Image.open(next(root.glob("*.jpg"))).size
        print(f"{n} images ({size[0]}x{size[1]} originals), {len(copies)} planted copies, {len(lookalikes)} "
              f"look-alike pairs; {args.workers} workers on {os.cpu_count()} cores; {args.repeat} runs each")  # fmt: skip
        runs: dict[str, list] = {name: [] for name in methods}
        for _ in range(args.repeat):
            for name, fn in methods.items():
                runs[name].append(fn(root, args.workers, args.distance))

    def median_run(results: list[dict], seconds) -> tuple[float, dict]:
        times = [seconds(r) for r in results]
        i = sorted(range(len(times)), key=times.__getitem__)[len(times) // 2]
        return times[i], results[i]

    # Like for like: hashing + search is all imagededup's PHash does (its output is every pair within the
    # distance). finegrain then confirms each candidate pair pixel by pixel, which imagededup has no counterpart
    # for: that row shows what the preprocess step as a whole costs, and what it gets for it (no false merges).
    rows = [
        ("finegrain: hash + search", runs["finegrain"], lambda r: r["hash s"] + r["search s"], "searched"),
        ("finegrain: hash + search + check (the preprocess step), every confirmed link", runs["finegrain"],
         lambda r: r["hash s"] + r["search s"] + r["confirm s"], "confirmed"),
        ("finegrain: the same, links whose copies are dropped (not kept in one fold)", runs["finegrain"],
         lambda r: r["hash s"] + r["search s"] + r["confirm s"], "dropped"),
        ("imagededup PHash: hash + search", runs["imagededup PHash"], lambda r: r["hash s"] + r["search s"],
         "searched"),
    ]  # fmt: skip
    print("\n| method | img/s (median) | recall of copies | look-alike pairs returned | phases (median run, s) |")
    print("|---|---|---|---|---|")
    rates = []
    for label, results, seconds, key in rows:
        t, med = median_run(results, seconds)
        recall, false = score(med[key], copies, lookalikes)
        phases = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in med.items()
                           if k not in ("searched", "confirmed", "dropped", "rules"))  # fmt: skip
        rates.append(n / t)
        print(f"| {label} | {n / t:.1f} | {recall:.3f} | {false}/{len(lookalikes)} | {phases} |")
    print(f"\nspeed ratio vs imagededup (medians): hash + search {rates[0] / rates[3]:.2f}x, "
          f"end to end with the check {rates[1] / rates[3]:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
