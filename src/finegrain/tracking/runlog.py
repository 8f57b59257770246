"""The local, append-only record of what a run logged: `<dir>/metrics.jsonl`, one JSON object a line.

It is written whether or not MLflow is enabled or reachable, so a tracking outage never loses a metric:
    {"time": 1764212345.123, "run_name": "convnext/fold0", "kind": "metrics", "step": 3, "data": {"loss": 0.4}}
`kind` is "params", "metrics" or "tags". Each line is flushed as written, so a killed pod keeps everything up to
its last line. For an `s3://` directory the file is kept locally (continuing an earlier attempt's copy) and
uploaded on `close()`, since S3 objects cannot be appended to.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

from finegrain import storage

log = logging.getLogger("finegrain.tracking")

JSONL_FILE = "metrics.jsonl"


class RunLog:
    """Appends rows to `<directory>/metrics.jsonl`; a no-op when `directory` is None."""

    def __init__(self, directory: str | Path | None, run_name: str) -> None:
        self.directory = str(directory) if directory is not None else None
        self.run_name = run_name
        self.uri = storage.join(self.directory, JSONL_FILE) if self.directory else None
        self._fh = None
        self._local: Path | None = None
        if self.directory is None:
            return
        if storage.is_s3(self.directory):
            self._local = Path(tempfile.mkdtemp(prefix="finegrain-runlog-")) / JSONL_FILE
            try:
                storage.download_file(self.uri, self._local)
            except FileNotFoundError:
                pass
            except storage.StorageError as exc:
                log.warning("%s: earlier record not readable (%s); starting a new one", self.uri, exc)
        else:
            Path(self.directory).mkdir(parents=True, exist_ok=True)
            self._local = Path(self.directory) / JSONL_FILE
        self._fh = open(self._local, "a", encoding="utf-8")  # noqa: SIM115 - held open for the run's life

    def append(self, kind: str, data: dict, step: int | None = None) -> None:
        if self._fh is None:
            return
        row = {
            "time": round(time.time(), 3),
            "run_name": self.run_name,
            "kind": kind,
            "step": step,
            "data": data,
        }
        self._fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is None:
            return
        self._fh.close()
        self._fh = None
        if self.directory and storage.is_s3(self.directory) and self._local is not None:
            try:
                storage.upload_file(self._local, self.uri)
            except (OSError, storage.StorageError) as exc:
                log.warning("could not upload %s: %s", self.uri, exc)
            with contextlib.suppress(OSError):
                shutil.rmtree(self._local.parent)


def read_runlog(directory: str | Path) -> list[dict]:
    """All rows of `<directory>/metrics.jsonl` (empty if there is none)."""
    try:
        text = storage.read_text(storage.join(str(directory), JSONL_FILE))
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]
