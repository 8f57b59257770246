"""A tiny ImageFolder dataset a tiny network learns in a few steps: each class is a colour.

Every image is a random blocky grey pattern (what preprocess's perceptual hashes see: no two images are near
duplicates) tinted with its class's colour (what the model learns). The colours are fixed, so datasets made with
other seeds (a holdout set) hold the same classes.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"blue": (40, 60, 220), "green": (40, 200, 60), "red": (220, 40, 40), "yellow": (220, 200, 40)}


def colour_jpeg(rng: np.random.Generator, colour: tuple[int, int, int], width: int = 64, height: int = 48) -> bytes:
    """One JPEG: a random 8x8-block grey pattern tinted with `colour`."""
    blocks = rng.random((height // 8, width // 8))
    grey = np.kron(blocks, np.ones((8, 8)))[..., None]
    pixels = np.clip((0.3 + 0.7 * grey) * np.array(colour)[None, None, :], 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def make_colour_dataset(root: str | Path, per_class: int = 12, n_test: int = 8, seed: int = 0) -> dict[str, str]:
    """`root/train/<colour>/*.jpg` and `root/test/test_<i>.jpg`; returns {test ID: its colour}."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    names = sorted(COLOURS)
    for name in names:
        (root / "train" / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / "train" / name / f"{name}_{seed}_{i:03d}.jpg").write_bytes(colour_jpeg(rng, COLOURS[name]))
    labels = {}
    if n_test:
        (root / "test").mkdir(parents=True, exist_ok=True)
        for i in range(n_test):
            name = names[i % len(names)]
            labels[f"test_{i:03d}"] = name
            (root / "test" / f"test_{i:03d}.jpg").write_bytes(colour_jpeg(rng, COLOURS[name]))
    return labels
