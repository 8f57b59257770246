"""A lock on a local path: `flock` on the lock file, so the kernel releases it when its process dies.

A crashed writer never blocks the next one, and nothing depends on clocks. The file holds the holder's details
for the error message.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

from finegrain.storage.locks.holder import POLL_S, BaseLock, LockLost


class LocalLock(BaseLock):
    """flock on a local lock file; released by the kernel if the process dies."""

    def __init__(self, uri: str, what: str) -> None:
        super().__init__(uri, what)
        self.path = Path(uri)
        self._fd: int | None = None

    def acquire(self, wait_s: float = 0.0) -> LocalLock:
        deadline = time.monotonic() + wait_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise self._held_error(self._read()) from None
                time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
                continue
            # The previous holder unlinks the file when it releases: the inode we locked may be gone by now.
            if self._same_file(fd):
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(self.info).encode(), 0)
        self._fd = fd
        return self

    def _same_file(self, fd: int) -> bool:
        try:
            a, b = os.fstat(fd), os.stat(self.path)
        except FileNotFoundError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def check(self) -> None:
        if self._fd is None or not self._same_file(self._fd):
            raise LockLost(f"{self.uri}: this writer's lock file was removed or replaced; not publishing")

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            if self._same_file(self._fd):
                os.unlink(self.path)  # while still locked: nobody can lock this inode and then find it unlinked
        os.close(self._fd)
        self._fd = None
