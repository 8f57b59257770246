"""bench/quality.py's own parts: the IDX reader, the seeded split, the ImageFolder writer, the summary table."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.quality import markdown, summarise
from bench.quality_data import CLASSES, draw_split, read_idx, write_imagefolder
from finegrain.data.layouts import read_dataset


def _idx(path: Path, array: np.ndarray) -> Path:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())
    return path


def _arrays(per_class: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(len(CLASSES)), per_class)
    return {
        "train_x": rng.integers(0, 256, (len(y), 28, 28), dtype=np.uint8), "train_y": y,
        "test_x": rng.integers(0, 256, (len(y), 28, 28), dtype=np.uint8), "test_y": y,
    }  # fmt: skip


def test_read_idx_round_trips_and_rejects_other_files(tmp_path: Path) -> None:
    images = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    assert np.array_equal(read_idx(_idx(tmp_path / "x.gz", images)), images)
    with gzip.open(tmp_path / "bad.gz", "wb") as f:
        f.write(b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="bad.gz: not an IDX file"):
        read_idx(tmp_path / "bad.gz")


def test_split_is_balanced_seeded_and_written_as_imagefolder(tmp_path: Path) -> None:
    arrays = _arrays(per_class=5)
    split = draw_split(arrays, train_per_class=3, test_per_class=2, seed=1)
    assert np.bincount(split.train_y).tolist() == [3] * 10 and np.bincount(split.test_y).tolist() == [2] * 10
    again = draw_split(arrays, train_per_class=3, test_per_class=2, seed=1)
    assert again.test_ids == split.test_ids and np.array_equal(again.train_x, split.train_x)
    assert draw_split(arrays, 3, 2, seed=2).test_ids != split.test_ids
    ds = read_dataset(str(write_imagefolder(split, tmp_path / "data", side=40)))
    assert ds.layout == "imagefolder" and sorted(ds.classes) == sorted(CLASSES)
    assert sorted(ds.test_ids) == sorted(split.test_ids) and len(ds.train) == 30
    with Image.open(next((tmp_path / "data" / "test").iterdir())) as image:
        assert image.size == (40, 40) and image.mode == "RGB"
    with pytest.raises(ValueError, match="5 images, 6 asked for"):
        draw_split(arrays, train_per_class=6, test_per_class=1, seed=0)


def test_summary_ratios_are_to_each_seeds_best_baseline() -> None:
    def row(kind: str, ll: float) -> dict:
        return {"kind": kind, "logloss": ll, "accuracy": 0.5, "ece": 0.1}

    per_seed = {
        0: {"prior": row("baseline", 2.3), "pixels": row("baseline", 0.6), "ens": row("finegrain", 0.3)},
        1: {"prior": row("baseline", 2.3), "pixels": row("baseline", 0.5), "ens": row("finegrain", 0.4)},
    }
    summary = summarise(per_seed)
    assert summary["ens"]["ratio"] == pytest.approx((0.3 / 0.6 + 0.4 / 0.5) / 2)
    assert summary["ens"]["ratio_worst_seed"] == pytest.approx(0.8)
    assert summary["pixels"]["logloss"] == pytest.approx(0.55)
    table = markdown(summary, [0, 1], {0: 100.0, 1: 120.0})
    assert "| ens | 0.350 | 0.500 | 0.100 | 0.65 | 0.300, 0.400 |" in table
    assert "seed 1: 120 s" in table
