"""Model quality on real photos: the whole pipeline against simple baselines, on the same split, in one run.

    python -m bench.quality                                   # configs/small.yaml, seeds 0 1 2 (~10 min each)
    python -m bench.quality --seeds 0 --set train.epochs=4    # one split, an override for `finegrain run`
    python -m bench.quality --json runs/bench/quality.json    # runs/ is git-ignored

Needs the photos of Debian's dataset-fashion-mnist (`apt-get install -y dataset-fashion-mnist`). For each seed
it draws a balanced split (bench/quality_data.py: 60 training, 100 test photos per class, 96 px RGB), writes it
as an ImageFolder dataset, fits the baselines (bench/quality_baselines.py: class prior, logistic regression on
pixels, a linear probe on each pretrained backbone's frozen features), runs `finegrain run --config CONFIG
--data <split>` as a user would, and scores on the held-out test photos: every member raw (softmax of its test
logits) and calibrated (its fitted temperature), and the calibrated ensemble (the probabilities the submission
is written from). Prints a Markdown table (test LogLoss, accuracy, ECE; mean over seeds and per seed; each
LogLoss as a ratio to the best baseline's) and the pipeline's wall time per seed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from bench.quality_baselines import frozen_features, logistic_probs, prior_probs
from bench.quality_data import CLASSES, draw_split, load_fashion_mnist, write_imagefolder
from finegrain.config import load_config
from finegrain.metrics import accuracy, ece, log_loss, softmax

BASELINES = "baseline"  # the kind of the rows the ratio is taken against


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/small.yaml")
    p.add_argument(
        "--set", dest="sets", action="append", default=[], help="override for finegrain run (repeat)"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train-per-class", type=int, default=60)
    p.add_argument("--test-per-class", type=int, default=100)
    p.add_argument("--side", type=int, default=96, help="the photos' size as written (px)")
    p.add_argument("--out", type=Path, default=Path("runs/bench/quality"))
    p.add_argument("--json", type=Path, default=None, help="write the results here as JSON")
    return p.parse_args(argv)


def scores(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    return {"logloss": log_loss(y, probs), "accuracy": accuracy(y, probs), "ece": ece(y, probs)}


def run_pipeline(args: argparse.Namespace, data: Path, out: Path, seed: int) -> float:
    """`finegrain run` on the split, as a user runs it (its own MLflow store under `out`); its wall seconds."""
    cmd = [
        str(Path(sys.executable).with_name("finegrain")), "run", "--config", args.config, "--data", str(data),
        "--out", str(out), "--set", f"tracking.uri=sqlite:///{out.resolve()}/mlruns.db",
        "--set", f"data.seed={seed}", "--set", f"train.seed={seed}",
        *[a for s in args.sets for a in ("--set", s)],
    ]  # fmt: skip
    log = out.parent / "run.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise SystemExit(
            f"finegrain run failed (exit {proc.returncode}); last lines of {log}:\n" + "\n".join(tail)
        )
    return seconds


def pipeline_probs(run: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """{row name: (test image ids, probabilities)} for every member raw and calibrated, and the ensemble; columns
    in CLASSES order (the pipeline sorts class names)."""
    from finegrain.posthoc.calibration import scaler_from_dict

    def to_bench_order(probs: np.ndarray, classes) -> np.ndarray:
        return probs[:, [[str(c) for c in classes].index(name) for name in CLASSES]]

    table = json.loads((run / "calibrate" / "calibration.json").read_text(encoding="utf-8"))
    out = {}
    for path in sorted(run.glob("train/*/fold*/test.npz")):
        key = f"{path.parent.parent.name}/{path.parent.name}"
        with np.load(path, allow_pickle=False) as z:
            ids, logits, classes = [str(i) for i in z["image_id"]], z["logits"], z["classes"]
        calibrated = scaler_from_dict(table[key], where=key).transform(logits)
        out[f"member {key} raw"] = (ids, to_bench_order(softmax(logits), classes))
        out[f"member {key} calibrated"] = (ids, to_bench_order(calibrated, classes))
    with np.load(run / "ensemble" / "test_probs.npz", allow_pickle=False) as z:
        out["calibrated ensemble"] = (
            [str(i) for i in z["image_id"]],
            to_bench_order(z["probs"], z["classes"]),
        )
    return out


def bench_seed(args: argparse.Namespace, arrays: dict, seed: int) -> tuple[dict[str, dict], float]:
    """One split: {row: {kind, logloss, accuracy, ece}} and the pipeline's wall seconds."""
    cfg = load_config(args.config, args.sets)
    split = draw_split(arrays, args.train_per_class, args.test_per_class, seed)
    root = args.out / f"seed{seed}"
    shutil.rmtree(root, ignore_errors=True)
    data = write_imagefolder(split, root / "data", args.side)
    y, n = split.test_y, len(CLASSES)
    # One thread: the baselines are not what is timed, and on a shared machine more threads than free cores
    # spin instead of working (see training.runtime.cpu_threads).
    torch.set_num_threads(1)
    with threadpool_limits(1):
        rows = {"class prior": (BASELINES, prior_probs(split.train_y, len(y), n))}
        rows["pixels, logistic regression"] = (
            BASELINES,
            logistic_probs(split.train_x, split.train_y, split.test_x, seed),
        )
        train_paths = sorted((data / "train").glob("*/*.png"))
        train_y = np.array([CLASSES.index(p.parent.name) for p in train_paths])
        test_paths = [data / "test" / f"{i}.png" for i in split.test_ids]
        for spec in (b for b in cfg.train.backbones if b.pretrained is not False):
            size = spec.image_size or cfg.train.image_size
            feats = [frozen_features(spec, paths, size) for paths in (train_paths, test_paths)]
            rows[f"linear probe, frozen {spec.name}"] = (
                BASELINES,
                logistic_probs(feats[0], train_y, feats[1], seed),
            )
    print(f"seed {seed}: baselines done; finegrain run --config {args.config} ...", flush=True)
    seconds = run_pipeline(args, data, root / "run", seed)
    for name, (ids, probs) in pipeline_probs(root / "run").items():
        if sorted(ids) != sorted(split.test_ids):
            raise SystemExit(f"{name}: its test ids differ from the split's")
        row_of = {image_id: i for i, image_id in enumerate(ids)}
        rows[name] = ("finegrain", probs[[row_of[i] for i in split.test_ids]])
    result = {name: {"kind": kind, **scores(y, probs)} for name, (kind, probs) in rows.items()}
    return result, seconds


def summarise(per_seed: dict[int, dict[str, dict]]) -> dict[str, dict]:
    """Per row: mean of each score over seeds, per-seed LogLoss, and LogLoss / the best baseline's (per seed)."""
    seeds = sorted(per_seed)
    names = list(per_seed[seeds[0]])
    best = {s: min(r["logloss"] for r in per_seed[s].values() if r["kind"] == BASELINES) for s in seeds}
    out = {}
    for name in names:
        got = [per_seed[s][name] for s in seeds]
        ratios = [per_seed[s][name]["logloss"] / best[s] for s in seeds]
        out[name] = {
            "kind": got[0]["kind"],
            **{k: float(np.mean([g[k] for g in got])) for k in ("logloss", "accuracy", "ece")},
            "ratio": float(np.mean(ratios)),
            "ratio_worst_seed": float(max(ratios)),
            "logloss_by_seed": [g["logloss"] for g in got],
        }
    return out


def markdown(summary: dict[str, dict], seeds: list[int], wall: dict[int, float]) -> str:
    """The results table (Markdown), then a line with the pipeline's wall time per seed."""
    head = "| row | test LogLoss | accuracy | ECE | LogLoss / best baseline | LogLoss by seed |"
    lines = [head, "|---|---:|---:|---:|---:|---|"]
    for name, r in summary.items():
        by_seed = ", ".join(f"{v:.3f}" for v in r["logloss_by_seed"])
        lines.append(
            f"| {name} | {r['logloss']:.3f} | {r['accuracy']:.3f} | {r['ece']:.3f} | {r['ratio']:.2f} | {by_seed} |"
        )
    times = ", ".join(f"seed {s}: {wall[s]:.0f} s" for s in seeds)
    return "\n".join(lines) + f"\n\n`finegrain run` wall time ({os.cpu_count()} cores): {times}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    arrays = load_fashion_mnist()
    per_seed, wall = {}, {}
    for seed in args.seeds:
        per_seed[seed], wall[seed] = bench_seed(args, arrays, seed)
    summary = summarise(per_seed)
    print(f"\nconfig {args.config} {' '.join('--set ' + s for s in args.sets)}; seeds {args.seeds}; "
          f"{args.train_per_class} train / {args.test_per_class} test photos per class, {args.side} px\n")  # fmt: skip
    print(markdown(summary, args.seeds, wall))
    ens = summary["calibrated ensemble"]
    print(
        f"\ncalibrated ensemble / best baseline: {ens['ratio']:.3f} (worst seed {ens['ratio_worst_seed']:.3f}; goal <= 0.75)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"config": args.config, "sets": args.sets, "seeds": args.seeds, "wall_s": wall,
                   "summary": summary, "per_seed": per_seed}  # fmt: skip
        args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
