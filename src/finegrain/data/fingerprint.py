"""Content fingerprints used as pipeline cache keys: a changed dataset or changed code never hits a stale cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

from finegrain import __version__, storage


def dataset_fingerprint(uri: str) -> str:
    """sha256 over every file's relative path, size and content hash (S3: key, size and ETag, which MinIO sets
    from the content), so renaming, adding, removing or editing any file changes it."""
    base = str(uri).rstrip("/")
    h = hashlib.sha256()
    if storage.is_s3(base):
        c = storage.client()
        bucket, key = storage.split_s3(base)
        prefix = key + "/" if key else None
        for obj in sorted(c.list_objects(bucket, prefix=prefix, recursive=True), key=lambda o: o.object_name):
            h.update(f"{obj.object_name[len(prefix or ''):]}\0{obj.size}\0{obj.etag}\n".encode())
    else:
        root = Path(base)
        if not root.exists():
            raise FileNotFoundError(f"{uri}: dataset not found")
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            digest = _file_sha256(path)
            h.update(f"{path.relative_to(root).as_posix()}\0{path.stat().st_size}\0{digest}\n".encode())
    return h.hexdigest()[:16]


def _file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def code_version() -> str:
    """Package version plus a hash of the package's source, so a code change invalidates cached steps."""
    src = Path(__file__).resolve().parents[1]  # the whole finegrain package
    h = hashlib.sha256()
    for path in sorted(src.rglob("*.py")):
        h.update(path.relative_to(src).as_posix().encode() + b"\0" + path.read_bytes())
    return f"{__version__}+{h.hexdigest()[:10]}"
