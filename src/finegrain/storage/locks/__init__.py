"""One writer per output: a lock file beside the outputs that names its holder (run id, host, pid, times).

    with hold_lock(storage.join(out, LOCK_NAME), "train efficientnet_lite0/fold0") as lock:
        ...                 # write checkpoints
        lock.check()        # before publishing: raises LockLost if another writer took the lock over

Local paths use `flock` on `<dir>/.finegrain.lock` (`locks.local`): the kernel drops the lock when its process
dies, so a crashed writer never blocks the next one. The dot-name keeps it out of `storage.list_uris`.

S3 has no locks, only conditional writes (`locks.s3`): the lock object is created with `If-None-Match: *` and
kept alive by a heartbeat; a lock whose heartbeat is older than the TTL, or whose holder is a dead process on
this host, is stale and taken over, so a pod retried after preemption takes over its predecessor's lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from finegrain.storage.locks.holder import LockHeld, LockLost
from finegrain.storage.locks.local import LocalLock
from finegrain.storage.locks.s3 import S3Lock, is_stale
from finegrain.storage.uris import is_s3

__all__ = ["LOCK_NAME", "LocalLock", "LockHeld", "LockLost", "S3Lock", "hold_lock", "is_stale", "make_lock"]

LOCK_NAME = ".finegrain.lock"


def make_lock(uri: str, what: str) -> LocalLock | S3Lock:
    return S3Lock(uri, what) if is_s3(uri) else LocalLock(uri, what)


@contextlib.contextmanager
def hold_lock(uri: str, what: str, wait_s: float | None = None) -> Iterator[LocalLock | S3Lock]:
    """Hold the lock at `uri` for the block; LockHeld (naming the holder) when another writer has it.

    wait_s: how long to wait for the holder to finish or be found dead (local default 0: a dead local holder
    has already released its lock; S3 default: one TTL and two heartbeats).
    """
    lock = make_lock(uri, what)
    if isinstance(lock, LocalLock):
        lock.acquire(0.0 if wait_s is None else wait_s)
    else:
        lock.acquire(wait_s)
    try:
        yield lock
    finally:
        lock.release()
