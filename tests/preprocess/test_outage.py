"""Storage failures during preprocess are never a data verdict: reruns ride out an outage, or the step fails.

The S3 tests stop the test server as the scan starts (or after a few files) and restart it 30 s later.
"""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from finegrain import storage
from finegrain.config import load_config
from finegrain.preprocess.workers import TransientReadError, UnreadableFilesError, map_batches
from finegrain.steps import preprocess

OUTAGE_S = 30.0


def _cfg(workers: int):
    cfg = load_config("configs/sample.yaml", ["data.layout=imagefolder"])
    cfg.preprocess.workers = workers
    return cfg


def _jpeg(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _dataset(root: Path) -> Path:
    """28 pictures (enough for the worker pool: it takes 16 or more) and one corrupt file."""
    rng = np.random.default_rng(1)
    for c in ("a", "b", "c"):
        (root / "train" / c).mkdir(parents=True)
        for i in range(8):
            (root / "train" / c / f"{c}{i}.jpg").write_bytes(_jpeg(rng))
    (root / "train" / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    (root / "test").mkdir()
    for i in range(4):
        (root / "test" / f"t{i}.jpg").write_bytes(_jpeg(rng))
    return root


# ---------------------------------------------------------------------------------- map_batches, inline


def test_rerun_resumes_where_the_outage_stopped_it() -> None:
    calls: list[int] = []
    down = {"until": 2}  # the first two attempts at batch 3 find storage down

    def fn(batch: int) -> int:
        calls.append(batch)
        if batch == 3 and down["until"] > 0:
            down["until"] -= 1
            raise TransientReadError(f"s3://b/{batch}.jpg", "MaxRetryError: connection refused")
        return batch * 10

    out = map_batches(fn, list(range(6)), [1] * 6, "t", "img", None, rounds=2, pause_s=0.01)
    assert out == [0, 10, 20, 30, 40, 50]
    # Nothing after the failing batch is tried while storage is down: a dead server costs one read per round.
    assert calls == [0, 1, 2, 3, 3, 3, 4, 5]


def test_outage_longer_than_the_budget_names_the_files() -> None:
    def fn(batch: int) -> int:
        if batch >= 1:
            raise TransientReadError(f"s3://b/{batch}.jpg", "MaxRetryError: connection refused")
        return batch

    with pytest.raises(UnreadableFilesError) as err:
        map_batches(fn, list(range(4)), [5] * 4, "validating", "img", None, rounds=1, pause_s=0.01)
    text = str(err.value)
    assert "s3://b/1.jpg: MaxRetryError: connection refused" in text and "1 file(s) could not be read" in text
    assert "15 file(s) left unjudged" in text and "not a data problem" in text


def test_a_missing_test_image_is_a_storage_error_not_fix_or_replace(tmp_path: Path, monkeypatch) -> None:
    data = _dataset(tmp_path / "data")
    real = storage.read_bytes

    def read(uri: str) -> bytes:
        if uri.endswith("t2.jpg"):
            raise PermissionError(13, "Permission denied", uri)
        return real(uri)

    monkeypatch.setattr(storage, "read_bytes", read)
    with pytest.raises(UnreadableFilesError) as err:
        preprocess.run(_cfg(workers=1), str(data), str(tmp_path / "out"))
    text = str(err.value)
    assert "t2.jpg: PermissionError" in text and "fix or replace" not in text and "nothing was marked corrupt" in text
    assert not (tmp_path / "out" / "manifest.parquet").exists()


def test_confirmation_reads_no_file_so_a_storage_outage_after_the_scan_changes_nothing(
    tmp_path: Path, monkeypatch
) -> None:
    from finegrain.storage.s3client import StorageError

    data = _dataset(tmp_path / "data")
    photo = np.repeat(np.repeat(np.random.default_rng(5).integers(0, 255, (15, 20, 3), dtype=np.uint8), 8, 0), 8, 1)
    for name, quality in (("orig.jpg", 95), ("copy.jpg", 60)):  # a re-encode: the pair check judges it
        buf = io.BytesIO()
        Image.fromarray(photo).save(buf, "JPEG", quality=quality)
        (data / "train" / "c" / name).write_bytes(buf.getvalue())
    calm = preprocess.run(_cfg(workers=1), str(data), str(tmp_path / "calm"))
    assert calm["status"]["near_duplicate"] == 1

    real_confirm, down = preprocess.confirm_candidates, {"now": False}

    def confirm(*args, **kwargs):
        down["now"] = True  # storage goes away as the pair check starts: it works from the scan's thumbnails
        try:
            return real_confirm(*args, **kwargs)
        finally:
            down["now"] = False

    real = storage.read_bytes
    slept: list[float] = []
    monkeypatch.setattr(storage, "read_bytes", lambda uri: (_ for _ in ()).throw(StorageError(f"{uri}: down"))
                        if down["now"] else real(uri))  # fmt: skip
    monkeypatch.setattr(preprocess, "confirm_candidates", confirm)
    monkeypatch.setattr("finegrain.preprocess.workers.time.sleep", slept.append)
    preprocess.run(_cfg(workers=1), str(data), str(tmp_path / "stormy"))
    assert slept == []  # nothing was retried: nothing was read
    calm_manifest = (tmp_path / "calm" / "manifest.parquet").read_bytes()
    assert (tmp_path / "stormy" / "manifest.parquet").read_bytes() == calm_manifest


# -------------------------------------------------------------------------------------- a real S3 outage


class _Outage(threading.Thread):
    """Stop the server now and start it again `after_s` later, or as soon as `end()` is called."""

    def __init__(self, s3_server, after_s: float) -> None:
        super().__init__(daemon=True)
        self.server, self.after_s, self.ended = s3_server, after_s, threading.Event()
        self.server.stop()
        self.start()

    def run(self) -> None:
        self.ended.wait(self.after_s)
        self.server.start()

    def end(self) -> None:
        self.ended.set()
        self.join(timeout=120)


@pytest.fixture
def s3_data(s3_bucket: str, tmp_path: Path) -> tuple[str, bytes]:
    """The dataset on S3 and the manifest of an undisturbed run."""
    storage.upload_dir(_dataset(tmp_path / "data"), f"{s3_bucket}/data")
    preprocess.run(_cfg(workers=2), f"{s3_bucket}/data", f"{s3_bucket}/calm")
    return s3_bucket, storage.read_bytes(f"{s3_bucket}/calm/manifest.parquet")


def _rode_out(caplog, restarter: _Outage) -> None:
    restarter.join(timeout=120)
    assert not restarter.is_alive(), "the server never came back"
    assert any("rerun in" in r.getMessage() for r in caplog.records), "the outage was not hit"


@pytest.mark.parametrize("workers", [2, 1])
def test_preprocess_rides_out_a_30s_outage(s3_server, s3_data, monkeypatch, caplog, workers: int) -> None:
    bucket, calm = s3_data
    monkeypatch.delenv("FINEGRAIN_S3_RETRIES", raising=False)  # the config's default budget: 5 reruns
    caplog.set_level(logging.WARNING, logger="finegrain.preprocess.workers")
    restarter: list[_Outage] = []
    if workers > 1:  # the worker pool: down from the scan's first read
        real_scan = preprocess.scan_table

        def scan_table(*args, **kwargs):
            restarter.append(_Outage(s3_server, OUTAGE_S))
            return real_scan(*args, **kwargs)

        monkeypatch.setattr(preprocess, "scan_table", scan_table)
    else:  # inline: down after the third chunk of files, so the rerun resumes mid-scan
        real_chunk = preprocess.scan_images
        chunks = {"n": 0}

        def scan_images(*args, **kwargs):
            chunks["n"] += 1
            if chunks["n"] == 4:
                restarter.append(_Outage(s3_server, OUTAGE_S))
            return real_chunk(*args, **kwargs)

        monkeypatch.setattr(preprocess, "scan_images", scan_images)
    summary = preprocess.run(_cfg(workers), f"{bucket}/data", f"{bucket}/stormy")
    _rode_out(caplog, restarter[0])
    assert storage.read_bytes(f"{bucket}/stormy/manifest.parquet") == calm  # same verdicts, byte for byte
    assert summary["status"]["corrupt"] == 1  # only the planted broken file


def test_outage_longer_than_the_retry_budget_fails_naming_files(s3_server, s3_data, monkeypatch) -> None:
    bucket, _ = s3_data
    monkeypatch.setenv("FINEGRAIN_S3_RETRIES", "1")  # ~10 s of patience against a 30 s outage
    real_scan = preprocess.scan_table
    restarter: list[_Outage] = []

    def scan_table(*args, **kwargs):
        restarter.append(_Outage(s3_server, OUTAGE_S))
        return real_scan(*args, **kwargs)

    monkeypatch.setattr(preprocess, "scan_table", scan_table)
    try:
        with pytest.raises(UnreadableFilesError) as err:
            preprocess.run(_cfg(workers=2), f"{bucket}/data", f"{bucket}/stormy")
    finally:
        restarter[0].end()  # the step gave up: no need to wait out the rest of the outage
    text = str(err.value)
    assert f"{bucket}/data/" in text and "could not be read" in text and "after 1 rerun" in text
    assert "not a data problem" in text and "fix or replace" not in text
    assert not storage.exists(f"{bucket}/stormy/manifest.parquet")


def test_workers_get_the_configured_storage_retries(monkeypatch) -> None:
    # storage.configure(cfg.storage) sets the retry count in the parent; fork-server workers start from a fresh
    # import, so without forwarding they would read S3 with the default whatever the config said.
    from finegrain.storage import s3client

    monkeypatch.setattr(s3client, "DEFAULT_RETRIES", 11)
    with preprocess.worker_pool(2) as pool:
        seen = pool.submit(eval, "__import__('finegrain.storage.s3client').storage.s3client.DEFAULT_RETRIES").result()
    assert seen == 11
