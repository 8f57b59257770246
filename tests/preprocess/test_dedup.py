"""Candidate search equals brute force; the strict check merges copies and never look-alikes; grouping."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from finegrain.preprocess.dedup import hashing as dedup
from finegrain.sample.car_specs import CLASS_SPECS, sample_scene, vary_details
from finegrain.sample.synthetic_cars import render


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _brute_pairs(f: np.ndarray, floor: float, k: int) -> dict[tuple[int, int], float]:
    """The search's contract spelled out, one picture at a time."""
    n, out = len(f), {}
    for i in range(n):
        score = [max(f[i, 0] @ f[j, 0], f[i, 1] @ f[j, 0], f[i, 2] @ f[j, 0], f[i, 0] @ f[j, 2]) if j != i
                 else -np.inf for j in range(n)]  # fmt: skip
        for j in np.argsort(score, kind="stable")[::-1][:k]:
            if score[j] >= floor:
                key = (min(i, int(j)), max(i, int(j)))
                out[key] = max(out.get(key, -1.0), float(score[j]))
    return out


def test_candidate_search_matches_brute_force(monkeypatch) -> None:
    from finegrain.preprocess.dedup import search

    rng = np.random.default_rng(0)
    f = rng.normal(size=(60, 3, 64)).astype(np.float32)
    f[30:] = f[:30] + 0.3 * rng.normal(size=(30, 3, 64)).astype(np.float32)  # 30 close pairs
    f /= np.linalg.norm(f, axis=2, keepdims=True)
    monkeypatch.setattr(search, "_BLOCK", 7)  # blocks that do not divide n
    for floor, k in ((-1.0, 1), (0.2, 2), (0.5, 3)):
        got = search.candidate_pairs(f, floor, k)
        want = _brute_pairs(f, floor, k)
        assert {(i, j) for i, j, _ in got} == set(want)
        assert all(abs(s - want[i, j]) < 1e-5 for i, j, s in got)
        assert [s for *_, s in got] == sorted((s for *_, s in got), reverse=True)  # best first
    assert search.candidate_pairs(f[:1], 0.0, 2) == [] and search.candidate_pairs(f, 0.0, 0) == []


def test_connected_groups() -> None:
    groups = dedup.connected_groups(7, [(5, 1), (1, 3), (4, 6)])
    assert groups.tolist() == [-1, 0, -1, 0, 1, 0, 1]
    assert dedup.connected_groups(3, []).tolist() == [-1, -1, -1]


def _groups_by_search(n: int, pairs: list[tuple[int, int]]) -> list[int]:
    """The contract spelled out: walk items in order, a new id for each unseen group of two or more."""
    linked: dict[int, set[int]] = {i: set() for i in range(n)}
    for i, j in pairs:
        linked[i].add(j)
        linked[j].add(i)
    out = [-1] * n
    next_id = 0
    for start in range(n):
        if out[start] != -1 or not linked[start] - {start}:
            continue
        todo = [start]
        while todo:
            item = todo.pop()
            if out[item] == -1:
                out[item] = next_id
                todo += linked[item]
        next_id += 1
    return out


def test_connected_groups_numbers_groups_by_their_first_item() -> None:
    # The last group's pair comes first, links run high to low, self-loops and repeats change nothing.
    pairs = [(9, 8), (6, 2), (2, 6), (4, 4), (7, 3), (3, 0), (1, 1)]
    assert dedup.connected_groups(10, pairs).tolist() == [0, -1, 1, 0, -1, -1, 1, 0, 2, 2]
    assert dedup.connected_groups(0, []).tolist() == []
    rng = np.random.default_rng(0)
    for n in (1, 5, 30, 200):
        for n_pairs in (0, n // 3, n):
            pairs = [tuple(int(v) for v in p) for p in rng.integers(0, n, (n_pairs, 2))]
            got = dedup.connected_groups(n, np.array(pairs, dtype=np.int64).reshape(-1, 2))
            assert got.dtype == np.int64 and got.tolist() == _groups_by_search(n, pairs)


def test_hash_hex_roundtrip() -> None:
    for v in (0, 1, 2**64 - 1, 0xDEADBEEF12345678):
        text = dedup.hash_hex(v)
        assert len(text) == 16 and dedup.hex_to_hash(text) == v


def _picture(data: bytes):
    """What the preprocess scan keeps of one file (normalize.Picture), through the scan itself."""
    from finegrain.preprocess.validate import scan_image

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.jpg"
        path.write_bytes(data)
        return scan_image(str(path), max_pixels=40_000_000, min_side=1)["thumb"]


def _check(a: bytes, b: bytes) -> tuple[bool, str]:
    from finegrain.preprocess.dedup.match import match_thumbs
    from finegrain.preprocess.dedup.rules import copy_rule

    pa, pb = _picture(a), _picture(b)
    m = match_thumbs(pa.thumb, pb.thumb)
    return m.same, copy_rule(m, pa, pb) if m.same else m.verdict


def _photo(rng: np.random.Generator, k: int, side: int = 600) -> Image.Image:
    """A rendered car scaled to a photo's size (the renderer draws 192x144)."""
    img = render(sample_scene(list(CLASS_SPECS.values())[k % len(CLASS_SPECS)], rng))
    return img.resize((side, round(side * img.height / img.width)), Image.Resampling.LANCZOS)


# Each kind of copy bench/dedup_kinds.py makes, and the kind the check must name (exact copies are linked by
# sha256 before the check: bench-only).
NAMED = {"reencode": "reencode", "resize": "resize", "crop_uniform": "crop", "crop_onesided": "crop", "hflip": "flip",
         "rotate": "rotation", "photometric": "photometric", "letterbox": "letterbox", "exif_rotated": "exif",
         "overlay": "overlay"}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(NAMED))
def test_each_kind_of_copy_is_confirmed_and_named(kind: str) -> None:
    from bench.dedup_kinds import KINDS

    rng = np.random.default_rng(11)
    for k in range(3):
        original = _jpeg(_photo(rng, k))
        same, rule = _check(original, KINDS[kind](original, rng))
        assert same and NAMED[kind] in rule.split("+"), (kind, k, rule)


def test_a_crop_scaled_back_covers_its_share_of_pixels() -> None:
    """A copy cropped by 10 % a side covers 64 % of its original's pixels, over the 55 % floor; counted in whole
    8x8 blocks it covered 52 % and a sure copy was called different."""
    from finegrain.preprocess.dedup.align import _crop_map
    from finegrain.preprocess.dedup.match import _MIN_COVER, DETAIL, _blocks

    rng = np.random.default_rng(3)
    a = np.clip(rng.normal(120, 40, (DETAIL, DETAIL)), 0, 255).astype(np.uint8)
    warp = _crop_map((0.1, 0.1, 0.1, 0.1), DETAIL, inverse=False)
    covered = _blocks(a, a, warp).covered
    assert abs(covered - 0.64) < 0.02 and covered > _MIN_COVER


def test_a_shear_is_taken_out_of_a_map_and_nothing_else() -> None:
    from finegrain.preprocess.dedup.align import map_parts, without_shear

    turn = np.deg2rad(3.0)
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    m = rot @ np.diag([1.2, 1.1]) @ np.array([[1.0, 0.15], [0.0, 1.0]])  # a crop, a turn and a shear
    warp = np.hstack([m, [[-5.0], [3.0]]]).astype(np.float32)
    fixed = without_shear(warp, 64)
    before, after = map_parts(warp, 64), map_parts(fixed, 64)
    assert before[3] > 0.1 and after[3] < 1e-6  # shear gone
    assert np.allclose(before[:3], after[:3], atol=1e-5) and abs(before[4] - after[4]) < 1e-5  # the rest kept
    centre = np.array([32.0, 32.0])
    assert np.allclose(warp[:, :2] @ centre + warp[:, 2], fixed[:, :2] @ centre + fixed[:, 2], atol=1e-4)


def _textured_scene(spec, rng: np.random.Generator):
    """A scene whose look-alike differs in its background texture too, as the sample plants them
    (sample.planted._lookalike_pair). With a faint texture two renders may differ only in a decal and a wheel
    angle, a few pixels each: the check then calls them a local edit (kept, one fold) or, finer than its 128-px
    thumbnail, a copy (README; docs/performance.md, the synthetic bench)."""
    from dataclasses import replace

    return replace(sample_scene(spec, rng), texture=float(rng.uniform(40, 48)))


def test_lookalikes_are_different_pictures() -> None:
    # Same car, pose, colour and light; another decal, background texture and wheel angle: a different photo.
    rng = np.random.default_rng(2)
    specs = list(CLASS_SPECS.values())
    for k in range(12):
        scene = _textured_scene(specs[k], rng)
        same, verdict = _check(_jpeg(render(scene)), _jpeg(render(vary_details(scene, rng))))
        assert not same, (k, verdict)


def test_search_ranks_each_copy_next_to_its_original() -> None:
    """Twelve pictures and a copy of each (kinds in turn): every copy's pair is among the candidates."""
    from bench.dedup_kinds import KINDS
    from finegrain.preprocess.dedup.search import candidate_pairs

    rng = np.random.default_rng(4)
    kinds = sorted(NAMED)
    originals = [_jpeg(_photo(rng, k)) for k in range(12)]
    copies = [KINDS[kinds[k % len(kinds)]](data, rng) for k, data in enumerate(originals)]
    features = np.stack([_picture(d).tiny for d in originals + copies])
    found = {(i, j) for i, j, _ in candidate_pairs(features, 0.6, 2)}
    assert all((k, 12 + k) in found for k in range(12)), sorted(found)


def test_letterbox_bars_are_trimmed_and_photos_are_not() -> None:
    from finegrain.preprocess.dedup.normalize import trim_borders

    rng = np.random.default_rng(0)
    photo = np.clip(rng.normal(120, 40, (90, 120)), 0, 255).astype(np.uint8)
    framed = np.zeros((150, 120), np.uint8)
    framed[30:120] = photo
    inner, trim = trim_borders(framed)
    assert inner.shape == (90, 120) and trim == (0.0, 0.2, 0.0, 0.2)
    assert trim_borders(photo)[1] == (0.0, 0.0, 0.0, 0.0)
    assert trim_borders(np.full((50, 50), 7, np.uint8))[1] == (0.0, 0.0, 0.0, 0.0)  # flat: nothing to keep


def test_a_soft_band_on_one_side_is_no_bar_but_a_pasted_picture_is() -> None:
    """A soft photo fading into a flat dark band on one side (a backdrop, bokeh) keeps its frame: trimming the
    original and not its watermarked or cropped copy would shift one against the other. A picture pasted into
    the corner of a white frame has a pure bar on one side only, and loses it."""
    from finegrain.preprocess.dedup.normalize import trim_borders

    rng = np.random.default_rng(1)
    photo = np.clip(rng.normal(120, 40, (90, 120)), 0, 255).astype(np.uint8)
    soft = photo.copy()
    soft[:, :30] = 40 + rng.integers(0, 5, (90, 30))  # a dark, nearly flat band on the left only
    assert trim_borders(soft)[1] == (0.0, 0.0, 0.0, 0.0)
    pasted = np.full((90, 150), 255, np.uint8)
    pasted[:, :120] = photo
    assert trim_borders(pasted)[1] == (0.0, 0.0, 0.2, 0.0)
    uneven = np.zeros((150, 120), np.uint8)  # bars of one colour but widths far apart: not a letterbox
    uneven[10:150 - 50] = photo
    uneven[:10] = 60
    uneven[100:] = 60
    assert trim_borders(uneven)[1] == (0.0, 0.0, 0.0, 0.0)


def test_phash_matches_full_2d_dct_and_bit_packing() -> None:
    from scipy.fft import dctn

    from finegrain.preprocess.dedup.normalize import phashes

    rng = np.random.default_rng(4)
    stack = rng.random((3, 2, 32, 32)) * 255
    expected = []
    for row in stack:
        bits = [dctn(x, type=2, norm="ortho")[:8, :8].ravel() for x in row]
        expected.append([int("".join("1" if v else "0" for v in (b > np.median(b))), 2) for b in bits])
    assert phashes(stack).tolist() == expected


def test_candidates_then_confirmation_on_files(tmp_path) -> None:
    """The preprocess step's two halves: search links byte-identical files and proposes near pairs between
    distinct contents only; confirmation merges the copies and keeps the look-alike apart."""
    import pandas as pd

    from finegrain.config import Config
    from finegrain.steps.preprocess import confirm_candidates, find_candidates, find_duplicates, scan_table

    rng = np.random.default_rng(3)
    scene = _textured_scene(list(CLASS_SPECS.values())[0], rng)
    original = _jpeg(render(scene))
    files = {"a.jpg": original, "a_same_bytes.jpg": original, "a_copy.jpg": _jpeg(render(scene), 60),
             "lookalike.jpg": _jpeg(render(vary_details(scene, rng)))}  # fmt: skip
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    cfg = Config()
    cfg.preprocess.workers = 1
    table, thumbs = scan_table(pd.DataFrame({"path": [str(tmp_path / n) for n in files]}), cfg)
    edges, candidates = find_candidates(table, cfg, thumbs)
    assert edges == [(0, 1)]  # same sha256
    assert (0, 2) in {(i, j) for i, j, _ in candidates} and all(1 not in pair[:2] for pair in candidates)
    groups, fold_groups, pairs = confirm_candidates(table, thumbs, edges, candidates, cfg)
    assert groups[0] == groups[1] == groups[2] != -1 and groups[3] == -1 and fold_groups[3] == -1
    copy = pairs[(pairs.a == 0) & (pairs.b == 2)]
    assert len(copy) == 1 and copy.same.all() and (copy.rule == "reencode").all() and (copy.action == "drop").all()
    assert not pairs.loc[pairs.b == 3, "same"].any()
    assert (find_duplicates(table, thumbs, cfg)[0] == groups).all()
