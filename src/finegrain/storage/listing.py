"""List the files under a local directory or the objects under an S3 prefix."""

from __future__ import annotations

from pathlib import Path

from finegrain.storage.s3client import client, is_missing, retry
from finegrain.storage.uris import is_s3, is_temp, split_s3

# Objects per ListObjects page; small values make tests exercise pagination and resume (read at call time).
LIST_PAGE_SIZE = 1000


def list_uris(prefix: str, recursive: bool = True, limit: int | None = None) -> list[str]:
    """Files under a prefix (full URIs, sorted). Local: files under a directory; S3: objects under a key prefix.

    Local dot-files are skipped (they are in-flight temp files of atomic writes or editor litter).
    """
    prefix = str(prefix)
    if not is_s3(prefix):
        root = Path(prefix)
        if not root.exists():
            return []
        if root.is_file():
            return [str(root)]
        found = root.rglob("*") if recursive else root.iterdir()
        files = sorted(str(p) for p in found if p.is_file() and not is_temp(p.name))
        return files[:limit] if limit else files
    bucket, key = split_s3(prefix)
    if key and not key.endswith("/"):
        key += "/"
    c = client(prefix)
    if not retry(f"{prefix}: list", lambda: c.bucket_exists(bucket)):
        return []
    out: list[str] = []
    last: list[str | None] = [None]

    def listing() -> None:
        # Resumes after the last key received, so a server restart mid-pagination neither loses nor repeats keys.
        pages = c._list_objects(
            bucket,
            delimiter=None if recursive else "/",
            encoding_type="url",
            max_keys=LIST_PAGE_SIZE,
            prefix=key,
            start_after=last[0],
        )
        for obj in pages:
            if obj.is_dir:
                continue
            out.append(f"s3://{bucket}/{obj.object_name}")
            last[0] = obj.object_name
            if limit and len(out) >= limit:
                return

    retry(f"{prefix}: list", listing)
    if not out and key and not prefix.endswith("/") and object_exists(c, bucket, key.rstrip("/")):
        return [prefix.rstrip("/")]  # like a local file path: listing a single object yields that object
    return sorted(out)


def object_exists(c, bucket: str, key: str) -> bool:
    """Whether the object `key` itself exists (not a prefix), with `c` a MinIO client."""

    def stat() -> bool:
        try:
            c.stat_object(bucket, key)
            return True
        except Exception as exc:  # only "missing" is an answer; the rest goes to retry()
            if is_missing(exc):
                return False
            raise

    return retry(f"s3://{bucket}/{key}: stat", stat)
