"""Publish a directory of outputs so that a reader never sees a half-written one.

A step's `output_dir` is staged and published file by file, JSON index files (metrics.json, classes.json, ...)
last: readers open those first, so they must never point at a file not yet there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from finegrain.storage.files import fsync_file, upload_file
from finegrain.storage.uris import is_s3, is_temp, join


def _publish_order(files: list[Path]) -> list[Path]:
    """Data files first, then the JSON files: those are what readers open first (metrics.json marks a member
    finished, classes.json goes with manifest.parquet), so they must never point at a file not yet there."""
    return sorted(files, key=lambda p: (p.suffix == ".json", str(p)))


def upload_dir(local_dir: str | Path, uri: str) -> list[str]:
    """Copy every file under a local directory to a URI prefix (keeps relative paths; skips dot-files; JSON
    files last, see `_publish_order`)."""
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise FileNotFoundError(f"{local_dir}: no such directory (uploading to {uri})")
    out = []
    for path in _publish_order([p for p in local_dir.rglob("*") if p.is_file() and not is_temp(p.name)]):
        rel = path.relative_to(local_dir).as_posix()
        out.append(upload_file(path, join(uri, rel)))
    return out


@contextlib.contextmanager
def output_dir(uri: str) -> Iterator[Path]:
    """A local directory to write a step's outputs into, published when the block exits cleanly.

    Local: a hidden staging directory beside `uri` (same filesystem); each file is then renamed into `uri`, so
    a reader sees every file either whole or not at all. S3: uploaded (each object appears whole). Both publish
    in `_publish_order`, and a block that fails publishes nothing.
    """
    uri = str(uri)
    if is_s3(uri):
        with tempfile.TemporaryDirectory() as tmp:
            yield Path(tmp)
            upload_dir(tmp, uri)
        return
    target = Path(uri).resolve()
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.staging-"))
    try:
        yield staging
        files = [p for p in staging.rglob("*") if p.is_file() and not is_temp(p.name)]
        for path in _publish_order(files):
            dst = target / path.relative_to(staging)
            dst.parent.mkdir(parents=True, exist_ok=True)
            fsync_file(path)  # the rename must never expose a file whose bytes are still in flight
            os.replace(path, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
