"""Small ImageFolder datasets made in a test: random-noise JPEGs (no two alike, so none is a near duplicate)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def noise_jpeg(seed: int, size: tuple[int, int] = (24, 20)) -> bytes:
    """A JPEG of random pixels, `size` = (width, height)."""
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG")
    return buf.getvalue()


def imagefolder(root: Path, sizes: dict[str, int], n_test: int = 2, size: tuple[int, int] = (24, 20)) -> Path:
    """train/<class>/ with `sizes[class]` JPEGs each and `n_test` JPEGs under test/ (0: no test/ folder)."""
    root = Path(root)
    for k, (name, n) in enumerate(sizes.items()):
        (root / "train" / name).mkdir(parents=True)
        for i in range(n):
            (root / "train" / name / f"{name}{i}.jpg").write_bytes(noise_jpeg(1000 * k + i, size))
    if n_test:
        (root / "test").mkdir()
        for i in range(n_test):
            (root / "test" / f"t{i}.jpg").write_bytes(noise_jpeg(10**6 + i, size))
    return root
