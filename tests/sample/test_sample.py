"""The sample generator: byte-identical for a seed, and its answer key matches what is on disk."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.fft import dctn
from typer.testing import CliRunner

from finegrain.config import load_config
from finegrain.data.layouts import read_dataset
from finegrain.sample.car_specs import ALIASES
from finegrain.sample.generate import TEST_PER_CLASS
from tests.support.paths import REPO


@pytest.fixture(scope="module")
def key(sample_dir: Path) -> dict:
    return json.loads((sample_dir / "answer_key.json").read_text(encoding="utf-8"))


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _gray(path: Path, box: list[int] | None = None, size: int = 64) -> np.ndarray:
    image = Image.open(path).convert("L")
    if box is not None:
        image = image.crop(tuple(box))
    return np.asarray(image.resize((size, size), Image.Resampling.BOX), dtype=np.float64)


def _phash_bits(gray64: np.ndarray) -> np.ndarray:
    small = gray64.reshape(32, 2, 32, 2).mean(axis=(1, 3))
    coeffs = dctn(small, norm="ortho")[:8, :8]
    return (coeffs > np.median(coeffs)).ravel()


def _ncc32(a: np.ndarray, b: np.ndarray) -> float:
    a, b = (x.reshape(32, 2, 32, 2).mean(axis=(1, 3)).ravel() for x in (a, b))
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.slow
def test_deterministic_through_cli(sample_dir: Path, tmp_path: Path) -> None:
    from finegrain.cli import app

    result = CliRunner().invoke(app, ["make-sample", "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    key = json.loads((sample_dir / "answer_key.json").read_text(encoding="utf-8"))
    # tqdm's bar goes to stderr; stdout carries the CLI's JSON summary of the returned key.
    summary = json.loads(result.stdout)
    assert summary["classes"] == len(key["classes"]) == key["counts"]["classes"]
    assert (summary["train_files"], summary["test_files"]) == (key["counts"]["train_files"], key["counts"]["test_files"])
    assert _hashes(tmp_path / "again") == _hashes(sample_dir)


def test_answer_key_files_exist_and_are_nfc(sample_dir: Path, key: dict) -> None:
    listed = [p for group in key["exact_duplicates"] for p in group]
    listed += [d[k] for d in key["near_duplicates"] for k in ("original", "copy")]
    for field in ("cross_class_duplicates", "alias_duplicates", "distinct_lookalikes"):
        listed += [p for pair in key[field] for p in pair]
    listed += [c["path"] for c in key["corrupt"]]
    assert all((sample_dir / p).is_file() for p in listed)
    assert len(set(listed)) == len(listed)  # each planted file plays one role
    names = [p.relative_to(sample_dir).as_posix() for p in sample_dir.rglob("*")]
    assert all(unicodedata.is_normalized("NFC", n) for n in names)
    assert key["counts"]["train_files"] == sum(1 for _ in (sample_dir / "train").rglob("*.jpg"))
    assert (
        key["counts"]["test_files"] == len(key["test_labels"]) == len(list((sample_dir / "test").iterdir()))
    )
    for name, n in key["counts"]["train_per_class"].items():
        assert len(list((sample_dir / "train" / name).iterdir())) == n
        assert 20 <= n <= 32


def test_classes_groups_aliases(sample_dir: Path, key: dict) -> None:
    classes = key["classes"]
    assert len(classes) == len(set(classes)) == 16
    assert classes != sorted(classes)  # the column order must not be reconstructible by sorting
    assert all(unicodedata.is_normalized("NFC", c) for c in classes)
    assert sorted(c for g in key["groups"] for c in g) == sorted(classes)
    assert 4 <= len(key["groups"]) <= 5
    assert key["aliases"] == ALIASES
    group_of = {c: i for i, g in enumerate(key["groups"]) for c in g}
    for alias, canonical in ALIASES.items():
        assert alias in classes and canonical in classes and group_of[alias] == group_of[canonical]
    # configs/sample.yaml declares the same alias pair the generator plants.
    assert load_config(str(REPO / "configs" / "sample.yaml"), []).data.aliases == ALIASES
    header = (sample_dir / "sample_submission.csv").read_text(encoding="utf-8").splitlines()
    assert header[0] == "ID," + ",".join(classes)
    assert len(header) == 1 + len(key["test_labels"])
    row = header[1].split(",")
    assert abs(sum(float(x) for x in row[1:]) - 1.0) < 1e-9


def test_test_images_labelled_and_valid(sample_dir: Path, key: dict) -> None:
    labels = key["test_labels"]
    assert sorted(labels.values()) == sorted(c for c in key["classes"] for _ in range(TEST_PER_CLASS))
    lines = (sample_dir / "test.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "ID,img_path"
    assert [line.split(",")[0] for line in lines[1:]] == list(labels)
    for line in lines[1:]:
        test_id, rel = line.split(",")
        assert rel == f"./test/{test_id}.jpg"
        with Image.open(sample_dir / rel) as im:  # the whole run must succeed: no bad test image
            im.load()
            assert 128 <= max(im.size) <= 256


def test_exact_and_cross_class_duplicates(sample_dir: Path, key: dict) -> None:
    exact = key["exact_duplicates"]
    assert len(exact) >= 3 and max(len(g) for g in exact) == 3
    for group in exact:
        assert len({(sample_dir / p).read_bytes() for p in group}) == 1
        assert len({Path(p).parent for p in group}) == 1  # inside one class
    for field, want_alias in (("cross_class_duplicates", False), ("alias_duplicates", True)):
        assert key[field]
        for a, b in key[field]:
            assert (sample_dir / a).read_bytes() == (sample_dir / b).read_bytes()
            ca, cb = Path(a).parent.name, Path(b).parent.name
            assert ca != cb
            assert (ALIASES.get(ca) == cb or ALIASES.get(cb) == ca) is want_alias


def test_near_duplicates_close_but_not_identical(sample_dir: Path, key: dict) -> None:
    near = key["near_duplicates"]
    assert {d["kind"] for d in near} == {"reencode", "resize", "crop"}
    for d in near:
        orig, copy = sample_dir / d["original"], sample_dir / d["copy"]
        assert orig.parent == copy.parent and orig.read_bytes() != copy.read_bytes()
        w, h = Image.open(orig).size
        cw, ch = Image.open(copy).size
        if d["kind"] == "reencode":
            assert (cw, ch) == (w, h)
        elif d["kind"] == "resize":
            assert (cw, ch) == (round(0.7 * w), round(0.7 * h)) == tuple(d["size"])
        else:
            left, top, right, bottom = d["box"]
            assert (cw, ch) == (right - left, bottom - top) and 0.90 <= cw / w <= 0.95 and 0.90 <= ch / h <= 0.95
        diff = np.abs(_gray(orig, d.get("box")) - _gray(copy)).mean()
        assert diff < 3.0, (d, diff)
        bits = int(np.count_nonzero(_phash_bits(_gray(orig)) != _phash_bits(_gray(copy))))
        assert bits <= 10, (d, bits)  # findable by a 64-bit pHash at the sample config's threshold


def test_lookalikes_coarse_alike_but_distinct(sample_dir: Path, key: dict) -> None:
    pairs = key["distinct_lookalikes"]
    assert len(pairs) >= 2
    for a, b in pairs:
        assert Path(a).parent == Path(b).parent  # same class
        ga, gb = _gray(sample_dir / a), _gray(sample_dir / b)
        bits = int(np.count_nonzero(_phash_bits(ga) != _phash_bits(gb)))
        assert bits <= 10, (a, b, bits)  # a naive 64-bit pHash calls them near duplicates ...
        assert _ncc32(ga, gb) < 0.9 and np.abs(ga - gb).mean() > 10  # ... the pixels say otherwise


def test_corrupt_files_fail_to_load(sample_dir: Path, key: dict) -> None:
    corrupt = {c["path"]: c["reason"] for c in key["corrupt"]}
    assert any("truncated" in r for r in corrupt.values())
    assert all(p.startswith("train/") for p in corrupt)
    for rel in corrupt:
        with pytest.raises(OSError), Image.open(sample_dir / rel) as im:
            im.load()
    for path in (sample_dir / "train").rglob("*.jpg"):  # everything else decodes
        if path.relative_to(sample_dir).as_posix() not in corrupt:
            with Image.open(path) as im:
                im.load()


def test_read_dataset_on_sample(sample_dir: Path, key: dict) -> None:
    ds = read_dataset(str(sample_dir))
    assert ds.layout == "hecto"
    assert ds.submission_columns == key["classes"]
    assert ds.classes == sorted(key["classes"])
    assert ds.test_ids == list(key["test_labels"])
    assert len(ds.train) == key["counts"]["train_files"] and ds.skipped == []
    counts = ds.train["label"].value_counts().to_dict()
    assert counts == key["counts"]["train_per_class"]


@pytest.mark.slow
def test_other_seed_differs(tmp_path: Path, sample_dir: Path) -> None:
    from finegrain.sample.generate import make_sample

    other = make_sample(tmp_path / "seed1", seed=1)
    assert other["seed"] == 1
    a, b = _hashes(sample_dir), _hashes(tmp_path / "seed1")
    assert (sample_dir / "test.csv").read_bytes() == (tmp_path / "seed1" / "test.csv").read_bytes()
    assert sum(a.get(k) == v for k, v in b.items()) < 5  # different pictures (only CSVs may match)
