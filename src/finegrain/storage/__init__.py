"""Read and write URIs: local paths and `s3://bucket/key` (MinIO or any S3 server) through the `minio` client.

    from finegrain import storage
    storage.write_text(storage.join(out, "metrics.json"), text)

This package is the facade callers use; the work is done in its modules:
  uris       is_s3, split_s3, join, basename
  files      read/write/upload/download/copy/delete/size/exists of one file or object (or a prefix)
  listing    list_uris (paginated, resumable S3 listings)
  publish    output_dir (atomic publishing of a step's outputs) and upload_dir
  settings   configure (the config's `storage` section) and the multipart part size
  s3client   the MinIO client: endpoint and credentials from the environment (never the config), retries
  locks      one writer per output (imported from `finegrain.storage.locks`, not re-exported here)

Writes never leave a half-written file or object visible: local writes go to a temp file in the same
directory (`.<name>.<random>.tmp`, skipped by listings), fsynced and renamed into place; S3 objects only appear
once the (multipart) upload completes. A step's `output_dir` is staged and published file by file, JSON index
files (metrics.json, classes.json, ...) last. Transient errors (connection refused/reset, timeouts, 5xx, SlowDown) are
retried with exponential backoff, long enough to ride out an S3 server restart. A missing file or object is a
FileNotFoundError naming the URI; other failures are StorageError naming the URI.

Keys are used byte-for-byte as given: a dataset uploaded from macOS may hold NFD-normalised Korean names, and
normalising the key here would make those objects unreadable. Normalise *labels* (to NFC), not keys.

Tunables are read where they are used, so set (or monkeypatch) them there: `settings.MULTIPART_PART_SIZE`,
`listing.LIST_PAGE_SIZE`, `s3client.DEFAULT_RETRIES`.
"""

from __future__ import annotations

from finegrain.storage.files import (
    copy,
    delete,
    download_dir,
    download_file,
    exists,
    local_path,
    read_bytes,
    read_text,
    size,
    upload_file,
    write_bytes,
    write_text,
)
from finegrain.storage.listing import list_uris
from finegrain.storage.publish import output_dir, upload_dir
from finegrain.storage.s3client import StorageError, client, ensure_bucket
from finegrain.storage.settings import StorageSettings, configure
from finegrain.storage.uris import basename, is_s3, join, split_s3

__all__ = [
    "StorageError", "StorageSettings", "basename", "client", "configure", "copy", "delete", "download_dir",
    "download_file", "ensure_bucket", "exists", "is_s3", "join", "list_uris", "local_path", "output_dir",
    "read_bytes", "read_text", "size", "split_s3", "upload_dir", "upload_file", "write_bytes", "write_text",
]  # fmt: skip
