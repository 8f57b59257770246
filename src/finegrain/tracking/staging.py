"""Private copies of artifacts waiting to be uploaded: the caller may delete the original before a buffered
upload is replayed, so the Tracker uploads a copy it owns."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from finegrain import storage

log = logging.getLogger("finegrain.tracking")


class ArtifactStaging:
    """A scratch directory (made on first use) holding one private copy per staged artifact."""

    def __init__(self) -> None:
        self.scratch: str | None = None

    def copy(self, src: str | Path) -> Path | None:
        """A private copy of a file/dir or an s3:// object/prefix; None, with a warning, if there is none."""
        src = str(src)
        if not storage.is_s3(src) and not Path(src).exists():
            log.warning("MLflow artifact %s: no such file or directory (skipped)", src)
            return None
        if self.scratch is None:
            self.scratch = tempfile.mkdtemp(prefix="finegrain-tracking-")
        dst = Path(tempfile.mkdtemp(dir=self.scratch)) / (storage.basename(src) or "artifact")
        try:
            if storage.is_s3(src):
                # Objects under `src/` make it a "directory"; otherwise it is a single object.
                if storage.list_uris(src.rstrip("/") + "/", limit=1):
                    storage.download_dir(src, dst)
                else:
                    storage.download_file(src, dst)
            elif Path(src).is_dir():
                shutil.copytree(src, dst)
            else:
                shutil.copy2(src, dst)
        except (OSError, storage.StorageError) as exc:
            log.warning("MLflow artifact %s: cannot stage (%s); skipped", src, exc)
            return None
        return dst

    def remove(self) -> None:
        """Delete every staged copy."""
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
