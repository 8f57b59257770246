"""What every lock shares: the holder's record (run id, host, pid, times) and the errors naming a holder."""

from __future__ import annotations

import os
import socket
import time
import uuid

from finegrain.storage.s3client import StorageError

# How often a writer waiting for a lock looks again.
POLL_S = 5.0


class LockHeld(StorageError):
    """Another writer holds the lock; the message names it."""


class LockLost(StorageError):
    """This writer's lock was taken over by another writer (it was thought dead): stop before publishing."""


def describe(holder: dict | None) -> str:
    """The holder of a lock, in words, for error messages and warnings."""
    if not holder:
        return "another writer (no details written yet)"
    age = time.time() - float(holder.get("heartbeat", holder.get("created", time.time())))
    return (
        f"run {holder.get('run_id', '?')} ({holder.get('what', '?')}) on host {holder.get('host', '?')}, "
        f"pid {holder.get('pid', '?')}, since {holder.get('started', '?')}, last heartbeat {age:.0f} s ago"
    )


class BaseLock:
    """A lock at `uri`, taken for `what`; `info` is the record written into the lock for other writers."""

    def __init__(self, uri: str, what: str) -> None:
        self.uri, self.what = str(uri), what
        now = time.time()
        self.info = {
            "run_id": uuid.uuid4().hex[:12], "what": what, "host": socket.gethostname(), "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "created": now, "heartbeat": now,
        }  # fmt: skip

    def _held_error(self, holder: dict | None) -> LockHeld:
        return LockHeld(
            f"{self.uri}: held by {describe(holder)}; another writer is using this output "
            "(wait for it to finish, use another --out, or delete the lock if that writer is gone)"
        )
