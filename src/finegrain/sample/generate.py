"""The bundled sample dataset: small, fine-grained, Hecto layout, with the problems real data has planted in it.

    finegrain make-sample --out data/sample      # or make_sample("data/sample", seed=0)

16 car classes with Korean make_model_year names in 5 groups (makes). A group fixes the silhouette and palette;
classes in it differ only in details (grille, lamps, stripe, roof, wheels); see `car_specs` and `synthetic_cars`.
Planted (see `planted`) and recorded in `answer_key.json` (also returned): exact duplicates, near duplicates (re-encoded, resized,
cropped), cross-class duplicates (label noise), one alias pair (one class under two names, with shared
pictures), a truncated and a zero-byte train file, and distinct look-alike pairs that must NOT be merged.
Test images are always valid, so a whole pipeline run on the sample succeeds.

The output is byte-identical for a given seed: one numpy Generator per class and purpose derived from the seed,
fixed JPEG settings, no timestamps or other metadata, every list in a fixed order.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from finegrain import storage
from finegrain.sample.car_specs import ALIASES, CLASS_SPECS, sample_scene
from finegrain.sample.planted import TrainClass, plant
from finegrain.sample.synthetic_cars import jpeg_bytes, render

__all__ = ["TEST_PER_CLASS", "make_sample"]

TEST_PER_CLASS = 4


def _test_images(seed: int) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    items = []
    for index, (name, spec) in enumerate(CLASS_SPECS.items()):
        rng = np.random.default_rng([seed, index, 1])
        items += [(name, jpeg_bytes(render(sample_scene(spec, rng)))) for _ in range(TEST_PER_CLASS)]
    order = np.random.default_rng([seed, 1_000_001]).permutation(len(items))
    files, labels = [], {}
    for i, j in enumerate(order):
        test_id = f"TEST_{i:05d}"
        files.append((test_id, items[j][1]))
        labels[test_id] = items[j][0]
    return files, labels


def _prepare_out(out: Path) -> None:
    """Refuse to write over a folder that is not an earlier sample; clear an earlier sample's image folders."""
    if out.exists() and any(out.iterdir()):
        if not (out / "answer_key.json").exists():
            raise FileExistsError(
                f"{out}: not empty and not an earlier sample (no answer_key.json); pick another --out"
            )
        for sub in ("train", "test"):
            shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _write_local(out: Path, seed: int) -> dict:
    names = tqdm(CLASS_SPECS, desc="sample: drawing classes", unit="class", leave=False)
    classes = {name: TrainClass(name, i, seed) for i, name in enumerate(names)}
    planted = plant(classes, np.random.default_rng([seed, 1_000_000]))
    paths: dict[tuple[str, str], str] = {}
    for name, c in classes.items():
        for key, rel in c.name_files().items():
            paths[(name, key)] = rel
        (out / "train" / name).mkdir(parents=True, exist_ok=True)
        for key, data in c.entries:
            (out / paths[(name, key)]).write_bytes(data)
    test_files, test_labels = _test_images(seed)
    (out / "test").mkdir(exist_ok=True)
    for test_id, data in test_files:
        (out / "test" / f"{test_id}.jpg").write_bytes(data)
    columns = list(CLASS_SPECS)
    (out / "test.csv").write_text(
        "ID,img_path\n" + "".join(f"{t},./test/{t}.jpg\n" for t, _ in test_files), encoding="utf-8"
    )
    prob = repr(1.0 / len(columns))
    (out / "sample_submission.csv").write_text(
        "ID,"
        + ",".join(columns)
        + "\n"
        + "".join(f"{t}," + ",".join([prob] * len(columns)) + "\n" for t, _ in test_files),
        encoding="utf-8",
    )

    def rel(pair: tuple[str, str]) -> str:
        return paths[pair]

    groups: dict[str, list[str]] = {}
    for name, spec in CLASS_SPECS.items():
        groups.setdefault(spec.group, []).append(name)
    key = {
        "seed": seed,
        "classes": columns,
        "aliases": dict(ALIASES),
        "groups": list(groups.values()),
        "exact_duplicates": [[rel(p) for p in group] for group in planted["exact"]],
        "near_duplicates": [
            {"original": rel(a), "copy": rel(b), "kind": k, **how} for a, b, k, how in planted["near"]
        ],
        "cross_class_duplicates": [[rel(a), rel(b)] for a, b in planted["cross"]],
        "alias_duplicates": [[rel(a), rel(b)] for a, b in planted["alias"]],
        "corrupt": [{"path": rel(p), "reason": why} for p, why in planted["corrupt"]],
        "distinct_lookalikes": [[rel(a), rel(b)] for a, b in planted["lookalike"]],
        "test_labels": test_labels,
        "counts": {
            "classes": len(columns),
            "train_files": sum(len(c.entries) for c in classes.values()),
            "test_files": len(test_files),
            "train_per_class": {name: len(c.entries) for name, c in classes.items()},
        },
    }
    (out / "answer_key.json").write_text(
        json.dumps(key, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    return key


def make_sample(out: str | Path, seed: int = 0) -> dict:
    """Write the sample dataset (Hecto layout + answer_key.json) to a local dir or s3:// prefix; return the key."""
    if storage.is_s3(str(out)):
        with tempfile.TemporaryDirectory() as tmp:
            key = _write_local(Path(tmp), seed)
            storage.upload_dir(tmp, str(out))
        return key
    out = Path(out)
    _prepare_out(out)
    return _write_local(out, seed)
