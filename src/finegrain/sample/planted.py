"""The problems real data has, planted in the sample's train files, and where each went (for the answer key).

Exact duplicates, near duplicates (re-encoded, resized, cropped), cross-class duplicates (label noise), one
alias pair (one class under two names, with shared pictures), a truncated and a zero-byte file, and distinct
look-alike pairs that must NOT be merged. Which class carries which problem is fixed, so the answer key's
shape never depends on the seed; every random choice comes from a Generator the caller seeds.
"""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
from PIL import Image
from scipy.fft import dctn

from finegrain.preprocess.dedup.align import ncc
from finegrain.sample.car_specs import ALIASES, CLASS_SPECS, CarSpec, sample_scene, vary_details
from finegrain.sample.synthetic_cars import jpeg_bytes, render

TRAIN_PER_CLASS = (20, 23)  # originals per class, inclusive range, before planted pictures and copies

# Which class carries which planted problem (fixed, so the answer key's shape never depends on the seed).
_EXACT_COPIES = {
    "소나타_LF_2017_2019": [1],
    "셀토스_2020_2022": [2],
    "레이_2018_2022": [1],
}  # extra copies/group
_NEAR = {"G80_RG3_2021_2024": "reencode", "모닝_JA_2018_2020": "reencode", "쏘렌토_MQ4_2021_2023": "resize",
         "스타리아_2022_2024": "resize", "아반떼_CN7_2021_2023": "crop", "캐스퍼_2022_2024": "crop"}  # fmt: skip
_CROSS = [("소나타_DN8_2020_2023", "그랜저_IG_2017_2019"), ("G70_2019_2021", "EQ900_2016_2018")]
_ALIAS_SHARED = 2
_LOOKALIKES = ["소나타_DN8_2020_2023", "쏘렌토_MQ4_2021_2023", "캐스퍼_2022_2024"]
_LOOKALIKE_TRIES = 20
_CROP_TRIES = 10
_CORRUPT = {"카니발_KA4_2021_2023": "truncated", "모닝_JA_2018_2020": "zero-byte"}


def _near_copy(data: bytes, kind: str, rng: np.random.Generator) -> tuple[bytes, dict] | None:
    """A near duplicate of a JPEG and what was done to it (recorded in the answer key)."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if kind == "reencode":
        return jpeg_bytes(image, quality=60), {"quality": 60}
    if kind == "resize":
        size = (round(image.width * 0.7), round(image.height * 0.7))
        return jpeg_bytes(image.resize(size, Image.Resampling.LANCZOS)), {"size": list(size)}
    # crop: 3-4 % off every edge, a little uneven. An uneven crop can move a 64-bit pHash past any sane
    # near-duplicate threshold; such a copy is a new picture, not the planted near duplicate, so draw again.
    w, h = image.size
    for _ in range(_CROP_TRIES):
        left, top, right, bottom = (float(f) for f in rng.uniform(0.03, 0.04, 4))
        box = (round(w * left), round(h * top), round(w * (1 - right)), round(h * (1 - bottom)))
        if _phash_distance(_thumb(image), _thumb(image.crop(box))) <= 8:
            return jpeg_bytes(image.crop(box)), {"box": list(box)}
    return None  # this picture's pHash is crop-sensitive: the caller picks another


def _thumb(image: Image.Image) -> np.ndarray:
    gray = image.convert("L").resize((64, 64), Image.Resampling.BOX)
    return np.asarray(gray, dtype=np.float64).reshape(32, 2, 32, 2).mean(axis=(1, 3))


def _phash_distance(a: np.ndarray, b: np.ndarray) -> int:
    """Bits apart in the classic 64-bit pHash (8x8 lowest DCT frequencies of a 32x32 thumbnail vs their median)."""
    bits = [(d > np.median(d)).ravel() for d in (dctn(t, norm="ortho")[:8, :8] for t in (a, b))]
    return int(np.count_nonzero(bits[0] != bits[1]))


def _lookalike_pair(spec: CarSpec, rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    """Two distinct pictures a 64-bit pHash confuses (<= 8 bits apart) but pixels do not (32px NCC < 0.85).

    Strong background texture carries the difference (see `synthetic_cars._texture`); a few variations are
    tried, deterministically, and the first that meets both bounds is kept.
    """
    for _ in range(_LOOKALIKE_TRIES):
        scene = replace(sample_scene(spec, rng), texture=float(rng.uniform(40, 48)))
        first = render(scene)
        for _ in range(4):
            twin = render(vary_details(scene, rng))
            a, b = _thumb(first), _thumb(twin)
            if _phash_distance(a, b) <= 8 and ncc(a, b) < 0.85:
                return first, twin
    raise RuntimeError(
        f"no look-alike pair for {spec} in {_LOOKALIKE_TRIES} scenes; widen synthetic_cars texture"
    )


class TrainClass:
    """One class's train files while they are planted: entries of (key, bytes), named only at the end."""

    def __init__(self, name: str, index: int, seed: int) -> None:
        self.name, self.spec = name, CLASS_SPECS[name]
        self.rng = np.random.default_rng([seed, index, 0])
        n = int(self.rng.integers(TRAIN_PER_CLASS[0], TRAIN_PER_CLASS[1] + 1))
        self.entries = [(f"orig{i}", jpeg_bytes(render(sample_scene(self.spec, self.rng)))) for i in range(n)]
        # Originals not yet used as the source of a planted problem, in a random order.
        self.free = [f"orig{i}" for i in self.rng.permutation(n)]

    def take(self) -> tuple[str, bytes]:
        key = self.free.pop()
        return key, self.bytes_of(key)

    def bytes_of(self, key: str) -> bytes:
        return next(data for k, data in self.entries if k == key)

    def add(self, key: str, data: bytes) -> str:
        self.entries.append((key, data))
        return key

    def name_files(self) -> dict[str, str]:
        """Shuffle the entries (planted copies must not all sit at the end) and name them; key -> rel path."""
        order = self.rng.permutation(len(self.entries))
        self.entries = [self.entries[i] for i in order]
        return {key: f"train/{self.name}/{self.name}_{i:04d}.jpg" for i, (key, _) in enumerate(self.entries)}


def plant(classes: dict[str, TrainClass], rng: np.random.Generator) -> dict[str, list]:
    """Add the planted problems; returns them keyed by (class, entry key), resolved to paths later."""
    found: dict[str, list] = {k: [] for k in ("exact", "near", "cross", "alias", "corrupt", "lookalike")}
    for name, extra in _EXACT_COPIES.items():
        c = classes[name]
        for n_extra in extra:
            key, data = c.take()
            found["exact"].append(
                [(name, key)] + [(name, c.add(f"{key}_copy{j}", data)) for j in range(n_extra)]
            )
    for name, kind in _NEAR.items():
        c = classes[name]
        made = None
        while made is None:  # only a crop can fail; a class has far more originals than crop-sensitive ones
            if not c.free:
                raise RuntimeError(f"{name}: no original takes a 3-4% crop within 8 pHash bits")
            key, data = c.take()
            made = _near_copy(data, kind, rng)
        found["near"].append(((name, key), (name, c.add(f"{key}_{kind}", made[0])), kind, made[1]))
    for src, dst in _CROSS:
        key, data = classes[src].take()
        found["cross"].append(((src, key), (dst, classes[dst].add(f"from_{src}_{key}", data))))
    [(alias, canonical)] = ALIASES.items()
    for _ in range(_ALIAS_SHARED):
        key, data = classes[canonical].take()
        found["alias"].append(((canonical, key), (alias, classes[alias].add(f"shared_{key}", data))))
    for name in _LOOKALIKES:
        c = classes[name]
        first, twin = _lookalike_pair(c.spec, c.rng)
        key = c.add("lookalike", jpeg_bytes(first))
        found["lookalike"].append(((name, key), (name, c.add(f"{key}_twin", jpeg_bytes(twin)))))
    for name, kind in _CORRUPT.items():
        c = classes[name]
        if kind == "truncated":
            full = jpeg_bytes(render(sample_scene(c.spec, c.rng)))
            found["corrupt"].append(
                ((name, c.add("truncated", full[: len(full) * 55 // 100])), "truncated JPEG")
            )
        else:
            found["corrupt"].append(((name, c.add("empty", b"")), "zero-byte file"))
    return found
