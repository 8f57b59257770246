"""The thumbnail store: pool workers hand pictures back by reference, the same pixels as an inline scan."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from finegrain.config import Config
from finegrain.preprocess.dedup.normalize import DETAIL
from finegrain.preprocess.dedup.store import ThumbStore
from finegrain.preprocess.workers import scratch_dir
from finegrain.steps.preprocess import scan_table, worker_pool


def test_a_stored_picture_pickles_by_reference_and_reads_back_equal(tmp_path) -> None:
    rng = np.random.default_rng(0)
    store = ThumbStore.create(3, tmp_path)
    thumb = rng.integers(0, 256, (DETAIL, DETAIL), dtype=np.uint8)
    tiny = rng.normal(size=(3, 64)).astype(np.float32)
    picture = store.keep(2, thumb, tiny, (600, 450), (0.0, 0.1, 0.0, 0.1), 6)
    blob = pickle.dumps(picture)
    assert len(blob) < 2_000  # the store's path and the row, not 16 KB of pixels
    back = pickle.loads(blob)
    assert np.array_equal(back.thumb, thumb) and np.array_equal(back.tiny, tiny)
    assert (back.size, back.trim, back.orientation) == ((600, 450), (0.0, 0.1, 0.0, 0.1), 6)
    assert not store.array[:2].any()  # only row 2 was written


def test_a_store_whose_file_is_gone_says_so(tmp_path) -> None:
    store = ThumbStore.create(1, tmp_path)
    os.remove(store.path)
    with pytest.raises(FileNotFoundError, match="thumbnail store .* is gone"):
        _ = pickle.loads(pickle.dumps(store)).array


def test_pool_scan_returns_the_inline_scan_pictures_and_cleans_up(tmp_path) -> None:
    rng = np.random.default_rng(1)
    paths = []
    for k in range(40):  # enough for several chunks per worker
        path = tmp_path / f"{k}.jpg"
        Image.fromarray(rng.integers(0, 256, (90 + k, 120, 3), dtype=np.uint8)).save(path, quality=85)
        paths.append(str(path))
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    paths.insert(7, str(tmp_path / "bad.jpg"))
    images = pd.DataFrame({"path": paths})
    cfg = Config()
    _, inline = scan_table(images, cfg)
    with worker_pool(2) as pool:
        scratch = scratch_dir(pool)
        table, pooled = scan_table(images, cfg, pool)
        assert [type(p).__name__ for p in pooled if p is not None] == ["_StoredPicture"] * 40
        assert len(pickle.dumps(pooled[0])) < 2_000
    assert not os.path.exists(scratch)  # removed with the pool...
    assert pooled[7] is None and table.loc[7, "status"] == "corrupt"
    for a, b in zip(inline, pooled):  # ...while the pictures it returned stay readable, equal to an inline scan's
        if a is not None:
            assert np.array_equal(a.thumb, b.thumb) and np.array_equal(a.tiny, b.tiny) and a.trim == b.trim


def test_the_mapping_goes_with_the_last_picture_viewing_it(tmp_path) -> None:
    import gc

    from finegrain.preprocess.dedup import store as store_module

    store = ThumbStore.create(2, tmp_path)
    pictures = [store.keep(k, np.full((DETAIL, DETAIL), k, np.uint8), np.zeros((3, 64), np.float32), (8, 8),
                           (0.0, 0.0, 0.0, 0.0), 1) for k in range(2)]  # fmt: skip
    assert store.path in store_module._OPEN and pictures[1].thumb[0, 0] == 1
    del pictures
    gc.collect()
    assert store.path not in store_module._OPEN  # a long-lived parent does not keep every run's file mapped
