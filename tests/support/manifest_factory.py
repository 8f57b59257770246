"""Tiny generated datasets in the preprocess output format (manifest.parquet + classes.json) for train tests.

Each class is a distinct colour with a class-specific stripe, so a tiny network learns it in a few steps.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd


def make_manifest(
    root: str | Path, n_classes: int = 4, per_class: int = 12, n_test: int = 6, folds: int = 2, size=(80, 60)
) -> Path:
    """Write JPEGs under root/images and root/prep/{manifest.parquet,classes.json}; returns root/prep."""
    root = Path(root)
    rng = np.random.default_rng(0)
    classes = [f"class_{c:02d}" for c in range(n_classes)]
    colours = rng.integers(30, 226, size=(n_classes, 3))
    rows = []

    def write(path: Path, c: int) -> str:
        w, h = size
        img = np.clip(colours[c] + rng.normal(0, 12, size=(h, w, 3)), 0, 255).astype(np.uint8)
        stripe = (c * w) // n_classes
        img[:, stripe : stripe + max(2, w // n_classes // 2)] = 255 - colours[c]
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), img[:, :, ::-1])
        return hashlib.sha256(path.read_bytes()).hexdigest()

    for c, name in enumerate(classes):
        for i in range(per_class):
            path = root / "images" / "train" / name / f"{name}_{i:03d}.jpg"
            sha = write(path, c)
            rows.append({"image_id": path.stem, "path": str(path), "split": "train", "label": name,
                         "class_name": name, "class_index": c, "sha256": sha, "fold": i % folds, "status": "ok",
                         "reason": ""})
    for i in range(n_test):
        path = root / "images" / "test" / f"TEST_{i:03d}.jpg"
        sha = write(path, i % n_classes)
        rows.append({"image_id": path.stem, "path": str(path), "split": "test", "label": "", "class_name": "",
                     "class_index": -1, "sha256": sha, "fold": -1, "status": "ok", "reason": ""})
    table = pd.DataFrame(rows)
    table["phash"] = "0" * 16
    table["dup_group"] = -1
    table["fold_group"] = -1
    prep = root / "prep"
    prep.mkdir(parents=True, exist_ok=True)
    table.to_parquet(prep / "manifest.parquet", index=False)
    (prep / "classes.json").write_text(
        json.dumps({"classes": classes, "aliases": {}, "submission_columns": classes}), encoding="utf-8"
    )
    return prep
