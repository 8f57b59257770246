"""Process-wide storage settings from the config's `storage` section: multipart part size, retry budget.

Read at call time (`settings.part_size()`), so `configure` and a test's monkeypatch of `MULTIPART_PART_SIZE`
take effect on the next upload.
"""

from __future__ import annotations

import os
from typing import Protocol

from finegrain.storage import s3client

# Files above this go up as multipart uploads in parts of this size (S3's minimum part is 5 MiB).
# FINEGRAIN_S3_PART_SIZE_MB overrides it per process; `upload_file(part_size=...)` per call.
MULTIPART_PART_SIZE = 16 * 1024 * 1024


class StorageSettings(Protocol):
    """What configure reads: the config's `storage` section (finegrain.config.StorageConfig) has these."""

    retries: int
    multipart_threshold_mb: int


def configure(settings: StorageSettings) -> None:
    """Apply the config's `storage` section process-wide: `storage.configure(cfg.storage)`.

    `multipart_threshold_mb` is both the multipart threshold and the part size. The environment variables
    FINEGRAIN_S3_RETRIES / FINEGRAIN_S3_PART_SIZE_MB still win, so an operator can override one pod.
    """
    global MULTIPART_PART_SIZE
    s3client.DEFAULT_RETRIES = int(settings.retries)
    MULTIPART_PART_SIZE = int(settings.multipart_threshold_mb) * 1024 * 1024


def part_size(requested: int | None = None) -> int:
    """The multipart part size and threshold: `requested`, else FINEGRAIN_S3_PART_SIZE_MB, else configured."""
    if requested:
        return int(requested)
    env = os.environ.get("FINEGRAIN_S3_PART_SIZE_MB")
    return int(float(env) * 1024 * 1024) if env else MULTIPART_PART_SIZE
