"""bench/dedup_*.py's own parts: each kind of copy does what its name says, tiling, and the scoring."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bench.dedup_kinds import KINDS, NAMED
from bench.dedup_photos import SIZE, _cover, _tiles
from bench.dedup_table import lookalike_pairs, pair_kind, score
from finegrain.config.copy_kinds import COPY_KINDS


def _photo() -> bytes:
    rng = np.random.default_rng(0)
    pixels = np.repeat(np.repeat(rng.integers(0, 255, (45, 60, 3), dtype=np.uint8), 10, 0), 10, 1)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_makes_a_readable_copy_of_its_kind(kind: str) -> None:
    original = _photo()
    copy = KINDS[kind](original, np.random.default_rng(1))
    img = Image.open(io.BytesIO(copy))
    img.load()
    assert NAMED[kind] in COPY_KINDS
    if kind == "exact":
        assert copy == original
    elif kind == "exif_rotated":
        orientation = img.getexif().get(0x0112)
        assert orientation in (3, 6, 8)
        assert img.size == ((450, 600) if orientation in (6, 8) else (600, 450))  # stored turned
    elif kind == "letterbox":
        assert img.size[0] == 800 and img.size != (600, 450)
    elif kind == "resize":
        assert img.size != (600, 450) and abs(img.size[0] / img.size[1] - 600 / 450) < 0.01
    else:
        assert img.size == (600, 450) and copy != original


def test_a_photo_is_covered_and_a_wallpaper_tiled_into_disjoint_windows() -> None:
    rng = np.random.default_rng(2)
    small = Image.fromarray(rng.integers(0, 255, (300, 500, 3), dtype=np.uint8))
    assert _cover(small).size == SIZE
    big = rng.integers(0, 255, (1000, 1900, 3), dtype=np.uint8)
    big[:, 1200:] = 128  # a flat part: its windows are left out
    tiles = _tiles(Image.fromarray(big))
    assert len(tiles) == 4 and all(t.size == SIZE for t in tiles)  # 3 x 2 windows fit; the third column is flat


def test_score_counts_copies_found_and_originals_merged() -> None:
    owner = {"a.jpg": "a", "a__crop.jpg": "a", "b.jpg": "b", "b__crop.jpg": "b", "c.jpg": "c"}
    cls = {"a": "x", "b": "x", "c": "y"}
    pairs = {frozenset(("a.jpg", "a__crop.jpg")), frozenset(("b__crop.jpg", "c.jpg"))}
    s = score(pairs, owner, cls)
    assert s["recall"] == {"crop": 0.5} and s["merged"] == []
    s = score(pairs | {frozenset(("a.jpg", "b.jpg"))}, owner, cls)
    assert s["recall"] == {"crop": 0.5} and s["merged"] == [("a", "b")] and pair_kind("a", "b", cls) == "look-alike"
    s = score(pairs | {frozenset(("b.jpg", "b__crop.jpg"))}, owner, cls)
    assert s["recall"] == {"crop": 1.0} and s["merged"] == [("b", "c")] and pair_kind("b", "c", cls) == "unrelated"


def test_video_frames_are_counted_apart_from_look_alikes() -> None:
    cls = {"f1": "basketball", "f2": "basketball", "w1": "Wood", "w2": "Wood", "w3": "Wood", "z": "zebra"}
    assert pair_kind("f1", "f2", cls) == "burst" and pair_kind("w1", "w3", cls) == "look-alike"
    assert lookalike_pairs(cls) == 3 and lookalike_pairs(cls, burst=True) == 1


def test_without_the_photos_the_bench_stops_with_the_install_line(monkeypatch, tmp_path) -> None:
    """A machine without the two Debian packages gets the apt-get line, before imagededup or any clock."""
    import sys

    from bench import dedup_photos, preprocess

    monkeypatch.setattr(dedup_photos, "OPENCV", tmp_path / "no-opencv-doc")
    monkeypatch.setattr(sys, "argv", ["bench/preprocess.py", "--photos"])
    monkeypatch.setattr(preprocess, "import_imagededup", lambda: pytest.fail("imagededup imported first"))
    with pytest.raises(SystemExit) as stop:
        preprocess.main()
    assert "no-opencv-doc" in str(stop.value) and dedup_photos.INSTALL in str(stop.value)
