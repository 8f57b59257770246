"""Manifest reading, the decoded-once image cache, and seeded (resumable) loaders."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from finegrain.data.loader import (
    CachedImageDataset,
    EpochSampler,
    build_image_cache,
    fold_rows,
    load_manifest,
    make_loader,
    resolve_image_uris,
)
from finegrain.data.transforms import TrainPreset
from tests.support.manifest_factory import make_manifest

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def test_cache_resizes_short_side_keeps_rgb_and_is_reused(tmp_path):
    red = np.zeros((60, 80, 3), np.uint8)
    red[..., 2] = 255  # BGR on disk
    tall = np.full((90, 30, 3), 40, np.uint8)
    cv2.imwrite(str(tmp_path / "red.png"), red)
    cv2.imwrite(str(tmp_path / "tall.png"), tall)
    uris = [str(tmp_path / "red.png"), str(tmp_path / "tall.png")]
    cache = build_image_cache(uris, short_side=24, cache_root=tmp_path / "cache", workers=2)
    assert cache[0].shape == (24, 32, 3) and cache[1].shape == (72, 24, 3)
    assert cache[0][..., 0].min() == 255 and cache[0][..., 2].max() == 0, "cache must hold RGB"
    stamp = (cache.directory / "pixels.u8").stat().st_mtime_ns
    again = build_image_cache(uris, short_side=24, cache_root=tmp_path / "cache", workers=2)
    assert again.directory == cache.directory and (again.directory / "pixels.u8").stat().st_mtime_ns == stamp
    other = build_image_cache(uris, short_side=30, cache_root=tmp_path / "cache")
    assert other.directory != cache.directory and other[0].shape == (30, 40, 3)


def test_cache_names_an_undecodable_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        build_image_cache([str(bad)], short_side=16, cache_root=tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("index.npz")), "a failed build must not look complete"


def test_epoch_sampler_order_is_a_function_of_seed_and_epoch():
    a, b = EpochSampler(50, seed=3, shuffle=True), EpochSampler(50, seed=3, shuffle=True)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert [i for i, _ in a] != [i for i, _ in b]
    assert sorted(i for i, _ in a) == list(range(50))
    assert [i for i, _ in EpochSampler(5, seed=3, shuffle=False)] == list(range(5))


def test_batches_do_not_depend_on_worker_count(tmp_path):
    prep = make_manifest(tmp_path, n_classes=2, per_class=4, n_test=0)
    table, _ = load_manifest(str(prep))
    cache = build_image_cache(table["path"], short_side=36, cache_root=tmp_path / "cache")
    ds = CachedImageDataset(cache, range(len(table)), table["class_index"], TrainPreset(32, MEAN, STD))

    def epoch_batches(workers: int) -> list[torch.Tensor]:
        loader = make_loader(ds, 4, seed=1, train=True, num_workers=workers, pin_memory=False)
        loader.sampler.set_epoch(1)
        return [x for x, _ in loader]

    single, multi = epoch_batches(0), epoch_batches(1)
    assert len(single) == 2 and all(torch.equal(s, m) for s, m in zip(single, multi))


def test_manifest_reading_and_fold_split(tmp_path):
    prep = make_manifest(tmp_path, n_classes=3, per_class=4, n_test=2)
    table, classes = load_manifest(str(prep / "manifest.parquet"))
    assert classes["classes"] == ["class_00", "class_01", "class_02"]
    train, val, test = fold_rows(table, 1)
    assert set(train["fold"]) == {0} and set(val["fold"]) == {1} and len(test) == 2
    assert list(val.index) == sorted(val.index), "validation rows keep manifest order"
    with pytest.raises(ValueError, match="fold 5"):
        fold_rows(table, 5)
    table.drop(columns=["fold"]).to_parquet(prep / "manifest.parquet")
    with pytest.raises(ValueError, match="fold"):
        load_manifest(str(prep))


def test_class_index_outside_classes_json_is_an_error(tmp_path):
    prep = make_manifest(tmp_path, n_classes=2, per_class=2, n_test=0)
    (prep / "classes.json").write_text(json.dumps({"classes": ["class_00"]}))
    with pytest.raises(ValueError, match="class_index outside"):
        load_manifest(str(prep))


def test_relative_paths_resolve_under_the_data_uri():
    assert resolve_image_uris(["train/a/1.jpg", "/abs/2.jpg", "s3://b/3.jpg"], "s3://data/hecto") == [
        "s3://data/hecto/train/a/1.jpg", "/abs/2.jpg", "s3://b/3.jpg"
    ]
