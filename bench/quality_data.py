"""The quality bench's photos: Fashion-MNIST from Debian's `dataset-fashion-mnist`, one seeded split written as
an ImageFolder dataset the pipeline reads (`train/<class>/*.png`, `test/*.png`), the test labels kept aside.

Fashion-MNIST is 70,000 real product photos (Zalando's catalogue), 28x28 grey, 10 classes. The bench draws a
small, balanced split from it (by default 60 training and 100 test images per class, the training ones from
the package's training file, the test ones from its test file, so no image is in both) and upscales each to
the pipeline's size as RGB, which is what a user's small CPU dataset looks like to the pipeline.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
INSTALL_HINT = "apt-get install -y dataset-fashion-mnist"
CLASSES = (
    "t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot",
)  # fmt: skip


@dataclass
class Split:
    """One seeded draw: 28x28 uint8 images and integer labels (indices into CLASSES)."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    test_ids: list[str]


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped, as the package ships them): uint8 images [N, 28, 28] or labels [N]."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    if magic >> 8 != 0x08:  # 0x0000_08_nn: unsigned bytes, nn dimensions
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (magic {magic:#010x})")
    ndim = magic & 0xFF
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape}, body holds {body.size} bytes")
    return body.reshape(shape)


def load_fashion_mnist(root: Path = FASHION_DIR) -> dict[str, np.ndarray]:
    """The package's four files as arrays; a clear error with the install line when it is missing."""
    names = {
        "train_x": "train-images-idx3-ubyte.gz",
        "train_y": "train-labels-idx1-ubyte.gz",
        "test_x": "t10k-images-idx3-ubyte.gz",
        "test_y": "t10k-labels-idx1-ubyte.gz",
    }
    missing = [n for n in names.values() if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{root}: {missing[0]} not found; install the photos with: {INSTALL_HINT}")
    return {key: read_idx(root / name) for key, name in names.items()}


def _per_class(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    picked = []
    for c in range(len(CLASSES)):
        pool = np.flatnonzero(labels == c)
        if len(pool) < n:
            raise ValueError(f"class {CLASSES[c]}: {len(pool)} images, {n} asked for")
        picked.append(rng.choice(pool, size=n, replace=False))
    return rng.permutation(np.concatenate(picked))


def draw_split(arrays: dict[str, np.ndarray], train_per_class: int, test_per_class: int, seed: int) -> Split:
    """A balanced, seeded draw: `train_per_class` from the training file, `test_per_class` from the test file."""
    rng = np.random.default_rng(seed)
    tr = _per_class(arrays["train_y"], train_per_class, rng)
    te = _per_class(arrays["test_y"], test_per_class, rng)
    return Split(
        train_x=arrays["train_x"][tr],
        train_y=arrays["train_y"][tr].astype(np.int64),
        test_x=arrays["test_x"][te],
        test_y=arrays["test_y"][te].astype(np.int64),
        test_ids=[f"t{i:05d}" for i in te],
    )


def upscale(image: np.ndarray, side: int) -> Image.Image:
    """A 28x28 grey photo as a `side` x `side` RGB image (bicubic), as the pipeline would be given it."""
    return Image.fromarray(image, mode="L").resize((side, side), Image.BICUBIC).convert("RGB")


def write_imagefolder(split: Split, root: Path, side: int) -> Path:
    """`root/train/<class>/<n>.png` and `root/test/<id>.png`; the test labels are not written under root."""
    for n, (image, label) in enumerate(zip(split.train_x, split.train_y)):
        folder = root / "train" / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        upscale(image, side).save(folder / f"{n:05d}.png")
    (root / "test").mkdir(parents=True, exist_ok=True)
    for image, image_id in zip(split.test_x, split.test_ids):
        upscale(image, side).save(root / "test" / f"{image_id}.png")
    return root
