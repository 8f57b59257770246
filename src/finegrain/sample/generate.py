"""The bundled sample dataset: small, fine-grained, Hecto layout, with the problems real data has planted in it.

    finegrain make-sample --out data/sample      # or make_sample("data/sample", seed=0)

16 car classes with Korean make_model_year names in 5 groups (makes). A group fixes the silhouette and palette;
classes in it differ only in details (grille, lamps, stripe, roof, wheels); see `synthetic_cars`. Planted and
recorded in `answer_key.json` (also returned): exact duplicates, near duplicates (re-encoded, resized,
cropped), cross-class duplicates (label noise), one alias pair (one class under two names, with shared
pictures), a truncated and a zero-byte train file, and distinct look-alike pairs that must NOT be merged.
Test images are always valid, so a whole pipeline run on the sample succeeds.

The output is byte-identical for a given seed: one numpy Generator per class and purpose derived from the seed,
fixed JPEG settings, no timestamps or other metadata, every list in a fixed order.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.fft import dctn
from tqdm import tqdm

from finegrain import storage
from finegrain.preprocess.dedup.pair_compare import ncc
from finegrain.sample.synthetic_cars import CarSpec, render, sample_scene, vary_details

__all__ = ["ALIASES", "CLASS_SPECS", "make_sample"]

JPEG_QUALITY = 90
TEST_PER_CLASS = 4
TRAIN_PER_CLASS = (20, 23)  # originals per class, inclusive range, before planted pictures and copies

# Submission column order: grouped by make as a scorer's list might be, deliberately NOT alphabetical.
CLASS_SPECS: dict[str, CarSpec] = {
    "소나타_DN8_2020_2023": CarSpec("sedan", "mesh", "slim", "none", "black", "multi"),
    "소나타_LF_2017_2019": CarSpec("sedan", "bars", "rect", "none", "body", "spokes5"),
    "아반떼_CN7_2021_2023": CarSpec("sedan", "mesh", "slim", "single", "body", "twotone"),
    "그랜저_IG_2017_2019": CarSpec("sedan", "vertical", "round", "double", "black", "solid"),
    "스포티지_5세대_2021_2023": CarSpec("suv", "mesh", "slim", "low", "black", "multi"),
    "뉴_스포티지_2021_2023": CarSpec("suv", "mesh", "slim", "low", "black", "multi"),  # alias: same generator
    "쏘렌토_MQ4_2021_2023": CarSpec("suv", "vertical", "rect", "none", "body", "spokes5"),
    "셀토스_2020_2022": CarSpec("suv", "bars", "round", "single", "black", "twotone"),
    "G80_RG3_2021_2024": CarSpec("luxury", "mesh", "slim", "none", "body", "multi"),
    "G70_2019_2021": CarSpec("luxury", "mesh", "rect", "double", "body", "spokes5"),
    "EQ900_2016_2018": CarSpec("luxury", "vertical", "round", "none", "black", "solid"),
    "모닝_JA_2018_2020": CarSpec("hatch", "bars", "round", "single", "body", "solid"),
    "레이_2018_2022": CarSpec("hatch", "solid", "rect", "none", "black", "spokes5"),
    "캐스퍼_2022_2024": CarSpec("hatch", "mesh", "round", "double", "black", "twotone"),
    "스타리아_2022_2024": CarSpec("van", "solid", "slim", "none", "body", "multi"),
    "카니발_KA4_2021_2023": CarSpec("van", "vertical", "rect", "low", "black", "spokes5"),
}
ALIASES = {
    "뉴_스포티지_2021_2023": "스포티지_5세대_2021_2023"
}  # {alias: canonical}; configs/sample.yaml matches

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


def _jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    buf = io.BytesIO()
    # Fixed settings and no metadata: the bytes depend on the pixels only.
    image.save(buf, "JPEG", quality=quality, subsampling=2, optimize=False)
    return buf.getvalue()


def _near_copy(data: bytes, kind: str, rng: np.random.Generator) -> tuple[bytes, dict] | None:
    """A near duplicate of a JPEG and what was done to it (recorded in the answer key)."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if kind == "reencode":
        return _jpeg(image, quality=60), {"quality": 60}
    if kind == "resize":
        size = (round(image.width * 0.7), round(image.height * 0.7))
        return _jpeg(image.resize(size, Image.Resampling.LANCZOS)), {"size": list(size)}
    # crop: 3-4 % off every edge, a little uneven. An uneven crop can move a 64-bit pHash past any sane
    # near-duplicate threshold; such a copy is a new picture, not the planted near duplicate, so draw again.
    w, h = image.size
    for _ in range(_CROP_TRIES):
        left, top, right, bottom = (float(f) for f in rng.uniform(0.03, 0.04, 4))
        box = (round(w * left), round(h * top), round(w * (1 - right)), round(h * (1 - bottom)))
        if _phash_distance(_thumb(image), _thumb(image.crop(box))) <= 8:
            return _jpeg(image.crop(box)), {"box": list(box)}
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


class _Class:
    """One class's train files while they are planted: entries of (key, bytes), named only at the end."""

    def __init__(self, name: str, index: int, seed: int) -> None:
        self.name, self.spec = name, CLASS_SPECS[name]
        self.rng = np.random.default_rng([seed, index, 0])
        n = int(self.rng.integers(TRAIN_PER_CLASS[0], TRAIN_PER_CLASS[1] + 1))
        self.entries = [(f"orig{i}", _jpeg(render(sample_scene(self.spec, self.rng)))) for i in range(n)]
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


def _plant(classes: dict[str, _Class], rng: np.random.Generator) -> dict[str, list]:
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
        key = c.add("lookalike", _jpeg(first))
        found["lookalike"].append(((name, key), (name, c.add(f"{key}_twin", _jpeg(twin)))))
    for name, kind in _CORRUPT.items():
        c = classes[name]
        if kind == "truncated":
            full = _jpeg(render(sample_scene(c.spec, c.rng)))
            found["corrupt"].append(
                ((name, c.add("truncated", full[: len(full) * 55 // 100])), "truncated JPEG")
            )
        else:
            found["corrupt"].append(((name, c.add("empty", b"")), "zero-byte file"))
    return found


def _test_images(seed: int) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    items = []
    for index, (name, spec) in enumerate(CLASS_SPECS.items()):
        rng = np.random.default_rng([seed, index, 1])
        items += [(name, _jpeg(render(sample_scene(spec, rng)))) for _ in range(TEST_PER_CLASS)]
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
    classes = {name: _Class(name, i, seed) for i, name in enumerate(names)}
    planted = _plant(classes, np.random.default_rng([seed, 1_000_000]))
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
