"""Training data path: the preprocess manifest, a decoded-once image cache, the Dataset and DataLoaders.

JPEG decode is the bottleneck of a fast GPU (see docs/performance.md), so `build_image_cache` decodes every
image once, resizes it so the short side is `cache_scale * image_size`, and stores the uint8 pixels in one
flat memmap (`pixels.u8`) with an index (`index.npz`: offset, height, width per image). The directory name is
a hash of the image list and the size, so reruns and other folds of the same manifest reuse it. Epochs then
only crop/flip/jitter small uint8 arrays.

Sample order and augmentation are functions of (seed, epoch, position): the sampler yields
`(index, sample_seed)` pairs and the dataset reseeds its preset per sample, so a run resumed at an epoch
boundary sees exactly the images and augmentations an uninterrupted run would, with any number of workers.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from finegrain import storage
from finegrain.data.decode import decode_image

# 2: decoded by finegrain.data.decode (PIL; alpha flattened on white) instead of OpenCV.
CACHE_VERSION = 2
MANIFEST_COLUMNS = ("image_id", "path", "split", "class_name", "class_index", "status", "fold")


# ---------------------------------------------------------------------------------------------- manifest


def load_manifest(uri: str) -> tuple[pd.DataFrame, dict]:
    """Read `manifest.parquet` and `classes.json` from a preprocess output prefix (or the parquet URI)."""
    uri = str(uri).rstrip("/")
    parquet = uri if uri.endswith(".parquet") else storage.join(uri, "manifest.parquet")
    prefix = parquet.rsplit("/", 1)[0] if "/" in parquet else "."
    classes_uri = storage.join(prefix, "classes.json")
    with storage.local_path(parquet) as local:
        table = pd.read_parquet(local)
    missing = [c for c in MANIFEST_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{parquet}: manifest lacks columns {missing}")
    try:
        classes = json.loads(storage.read_text(classes_uri))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{classes_uri}: not valid JSON ({exc})") from None
    if not isinstance(classes, dict) or not isinstance(classes.get("classes"), list) or not classes["classes"]:
        raise ValueError(f"{classes_uri}: expected {{'classes': [names...], ...}}")
    classes.setdefault("aliases", {})
    n = len(classes["classes"])
    labelled = table[(table["split"] == "train") & (table["status"] == "ok") & (table["fold"] >= 0)]
    bad = labelled[(labelled["class_index"] < 0) | (labelled["class_index"] >= n)]
    if len(bad):
        raise ValueError(f"{parquet}: {len(bad)} rows have class_index outside [0, {n}) (e.g. {bad.iloc[0].image_id})")
    return table.reset_index(drop=True), classes


def fold_rows(table: pd.DataFrame, fold: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, validation, test) rows for fold K, each in manifest order."""
    usable = table[(table["split"] == "train") & (table["status"] == "ok") & (table["fold"] >= 0)]
    folds = sorted(int(f) for f in usable["fold"].unique())
    if fold not in folds:
        raise ValueError(f"fold {fold} not in the manifest (folds present: {folds})")
    train = usable[usable["fold"] != fold]
    val = usable[usable["fold"] == fold]
    test = table[table["split"] == "test"]
    if len(train) == 0:
        raise ValueError(f"fold {fold}: no training rows left")
    return train, val, test


def resolve_image_uris(paths: Sequence[str], data_uri: str) -> list[str]:
    """Manifest paths as readable URIs: absolute paths and s3:// stay, relative ones are under `data_uri`."""
    return [p if storage.is_s3(p) or Path(p).is_absolute() else storage.join(data_uri, p) for p in map(str, paths)]


# ------------------------------------------------------------------------------------------ image cache


def resize_short_side(image: np.ndarray, short_side: int) -> np.ndarray:
    """The cache's resize; the registered model repeats it so served predictions match the pipeline's."""
    h, w = image.shape[:2]
    scale = short_side / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(image, size, interpolation=interp))


def _decode_resized(uri: str, short_side: int) -> np.ndarray:
    # The one decoder preprocess validated the file with: what preprocess calls ok, the cache can read.
    return resize_short_side(decode_image(storage.read_bytes(uri), uri), short_side)


def cache_key(uris: Sequence[str], fingerprints: Sequence[str], short_side: int) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{short_side}".encode())
    for u, f in zip(uris, fingerprints):
        h.update(f"\n{u}|{f}".encode())
    return h.hexdigest()[:20]


def default_cache_root(configured: str | None) -> Path:
    return Path(configured or os.environ.get("FINEGRAIN_CACHE_DIR") or Path(tempfile.gettempdir(), "finegrain-cache"))


class ImageCache:
    """Read side of a built cache: `cache[i]` is image i as uint8 HWC RGB (a view into the memmap)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        index = np.load(self.directory / "index.npz")
        self.offsets, self.heights, self.widths = index["offsets"], index["heights"], index["widths"]
        self._pixels: np.memmap | None = None  # opened lazily: each DataLoader worker maps it itself

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> np.ndarray:
        if self._pixels is None:
            self._pixels = np.memmap(self.directory / "pixels.u8", dtype=np.uint8, mode="r")
        h, w, off = int(self.heights[i]), int(self.widths[i]), int(self.offsets[i])
        return self._pixels[off : off + h * w * 3].reshape(h, w, 3)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pixels": None}


def build_image_cache(
    uris: Sequence[str],
    short_side: int,
    cache_root: str | Path,
    fingerprints: Sequence[str] | None = None,
    workers: int = 4,
) -> ImageCache:
    """Decode each image once, resize its short side to `short_side`, store all as one uint8 memmap."""
    uris = [str(u) for u in uris]
    fingerprints = [str(f) for f in fingerprints] if fingerprints is not None else [""] * len(uris)
    directory = Path(cache_root) / f"{cache_key(uris, fingerprints, short_side)}-{short_side}"
    if (directory / "index.npz").exists():
        return ImageCache(directory)
    directory.mkdir(parents=True, exist_ok=True)
    offsets = np.zeros(len(uris), np.int64)
    heights = np.zeros(len(uris), np.int32)
    widths = np.zeros(len(uris), np.int32)
    # Written under temp names and renamed: a killed build leaves no index, so the next run rebuilds.
    fd, tmp_pixels = tempfile.mkstemp(dir=directory, suffix=".u8.tmp")
    offset, chunk = 0, max(64, 16 * max(1, workers))
    # PIL decode, cv2 resize and file reads release the GIL, so threads scale without pickling pixels around.
    with os.fdopen(fd, "wb") as fh, ThreadPoolExecutor(max(1, workers)) as pool, tqdm(
        total=len(uris), desc=f"cache {short_side}px", unit="img", disable=len(uris) < 500
    ) as bar:
        for start in range(0, len(uris), chunk):
            batch = uris[start : start + chunk]
            for i, image in enumerate(pool.map(lambda u: _decode_resized(u, short_side), batch), start):
                offsets[i], (heights[i], widths[i]) = offset, image.shape[:2]
                fh.write(image.tobytes())
                offset += image.nbytes
            bar.update(len(batch))
    os.replace(tmp_pixels, directory / "pixels.u8")
    fd, tmp_index = tempfile.mkstemp(dir=directory, suffix=".npz.tmp")
    with os.fdopen(fd, "wb") as fh:
        np.savez(fh, offsets=offsets, heights=heights, widths=widths)
    os.replace(tmp_index, directory / "index.npz")
    return ImageCache(directory)


# ---------------------------------------------------------------------------------- dataset and loaders


class CachedImageDataset(Dataset):
    """Images from an `ImageCache` through a preset; items are `(image, label)` (label -1 when unknown)."""

    def __init__(self, cache: ImageCache, cache_rows: Sequence[int], labels: Sequence[int] | None, transform) -> None:
        self.cache = cache
        self.cache_rows = np.asarray(cache_rows, dtype=np.int64)
        self.labels = np.asarray(labels if labels is not None else [-1] * len(self.cache_rows), dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.cache_rows)

    def __getitem__(self, item) -> tuple[torch.Tensor, int]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        if seed is not None:
            self.transform.set_seed(seed)
        image = self.transform(self.cache[int(self.cache_rows[index])])
        return image, int(self.labels[index])


def sample_seed(seed: int, epoch: int, position: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}/{epoch}/{position}".encode(), digest_size=4).digest(), "little")


class EpochSampler(Sampler):
    """Yields `(index, sample_seed)`; the order (shuffled or not) is a pure function of (seed, epoch)."""

    def __init__(self, n: int, seed: int, shuffle: bool) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        for position, index in enumerate(order):
            yield index, sample_seed(self.seed, self.epoch, position)


def _seed_worker(worker_id: int) -> None:
    # torch gives each worker its own initial seed (from the loader's generator); derive numpy/random from it.
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def make_loader(
    dataset: CachedImageDataset,
    batch_size: int,
    seed: int,
    train: bool,
    num_workers: int,
    pin_memory: bool,
    timeout: float = 0,
) -> DataLoader:
    """A DataLoader over `dataset` with an `EpochSampler`; call `loader.sampler.set_epoch(e)` per epoch."""
    # timeout: seconds to wait for a worker's batch before raising (0 = forever), so a stuck worker fails loudly.
    workers = {"persistent_workers": True, "prefetch_factor": 4, "timeout": timeout} if num_workers > 0 else {}
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochSampler(len(dataset), seed, shuffle=train),
        # Dropping the ragged last batch keeps BatchNorm away from tiny batches; never drop everything.
        drop_last=train and len(dataset) >= batch_size,
        num_workers=num_workers,
        pin_memory=pin_memory,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(seed),
        **workers,
    )
