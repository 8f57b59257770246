"""URIs as `finegrain.storage` sees them: a local path, or `s3://bucket/key`.

Keys are used byte-for-byte as given (see the package docstring): nothing here normalises them.
"""

from __future__ import annotations

from pathlib import Path

from finegrain.storage.s3client import StorageError


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> (`bucket`, `a/b`)."""
    if not is_s3(uri):
        raise StorageError(f"{uri}: not an s3:// URI")
    bucket, _, key = str(uri)[5:].partition("/")
    if not bucket:
        raise StorageError(f"{uri}: no bucket in URI")
    return bucket, key


def join(base: str, *parts: str) -> str:
    base = str(base)
    if is_s3(base):
        out = base.rstrip("/")
        for p in parts:
            out += "/" + str(p).strip("/")
        return out
    return str(Path(base, *parts))


def basename(uri: str) -> str:
    return str(uri).rstrip("/").rsplit("/", 1)[-1]


def is_temp(name: str) -> bool:
    """A dot-file: an in-flight temp file of an atomic write (or editor litter), never listed or published."""
    return name.startswith(".")
