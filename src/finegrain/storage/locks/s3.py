"""A lease on S3: a lock object written with conditional puts and kept alive by a heartbeat thread.

S3 has no locks, only conditional writes: the lock object is created with `If-None-Match: *` (exactly one
writer's create succeeds) and refreshed by a heartbeat thread with `If-Match: <etag>` (so a writer whose lock
was taken over learns it at the next heartbeat). A lock is stale, and is taken over with `If-Match` on the
stale object's etag, when its heartbeat is older than the TTL or its holder is a dead process on this host;
a new writer waits up to `wait_s` (default: one TTL and a bit) for that, so a pod retried after preemption
takes over its predecessor's lock instead of failing. Needs an S3 server with conditional writes (AWS S3,
MinIO and SeaweedFS have them).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

from finegrain.storage.locks.holder import POLL_S, BaseLock, LockLost, describe
from finegrain.storage.s3client import StorageError, client, ensure_bucket, is_missing, retry
from finegrain.storage.uris import split_s3

log = logging.getLogger("finegrain.storage.locks")

# A holder refreshes its S3 lock every HEARTBEAT_S; one not refreshed for TTL_S is taken to be dead.
# TTL_S - HEARTBEAT_S is also how much the hosts' clocks may disagree before a live lock looks stale.
TTL_S = float(os.environ.get("FINEGRAIN_LOCK_TTL_S", 300))
HEARTBEAT_S = float(os.environ.get("FINEGRAIN_LOCK_HEARTBEAT_S", 30))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_stale(holder: dict, ttl_s: float | None = None) -> bool:
    """A dead holder: a process on this host that no longer exists, or a heartbeat older than the TTL."""
    ttl_s = TTL_S if ttl_s is None else ttl_s
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        if not _pid_alive(holder["pid"]):
            return True
    return time.time() - float(holder.get("heartbeat", 0)) > ttl_s


def _precondition_failed(exc: StorageError) -> bool:
    code = getattr(exc.__cause__, "code", None)
    # 412 PreconditionFailed: the condition did not hold; 409 ConditionalRequestConflict: a concurrent
    # conditional write to the same key won (AWS); both mean another writer got there first.
    return code in {"PreconditionFailed", "ConditionalRequestConflict"}


class S3Lock(BaseLock):
    """A lock object written with conditional puts and kept alive by a heartbeat thread."""

    def __init__(self, uri: str, what: str, ttl_s: float | None = None, heartbeat_s: float | None = None) -> None:
        super().__init__(uri, what)
        self.bucket, self.key = split_s3(uri)
        self.ttl_s = TTL_S if ttl_s is None else ttl_s
        self.heartbeat_s = HEARTBEAT_S if heartbeat_s is None else heartbeat_s
        self.etag: str | None = None
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    def _put(self, condition: dict[str, str]) -> str | None:
        """Write our info under `condition`; the new etag, or None when another writer's object is in the way."""
        body = json.dumps(self.info).encode()
        try:
            result = retry(
                f"{self.uri}: lock",
                lambda: client(self.uri)._put_object(self.bucket, self.key, body, headers=condition),
            )
        except StorageError as exc:
            if _precondition_failed(exc):
                return None
            raise
        return result.etag

    def _get(self) -> tuple[dict | None, str | None]:
        """(holder info, etag) of the lock object; (None, None) when there is none."""

        def get():
            resp = client(self.uri).get_object(self.bucket, self.key)
            try:
                return resp.read(), resp.headers.get("etag", "").strip('"')
            finally:
                resp.close()
                resp.release_conn()

        try:
            data, etag = retry(f"{self.uri}: read lock", get)
        except StorageError as exc:
            if is_missing(exc):
                return None, None
            raise
        try:
            holder = json.loads(data)
        except ValueError:
            holder = None
        # Not a lock we wrote: no heartbeat, so is_stale() lets it be taken over.
        return (holder if isinstance(holder, dict) else {}), etag

    def acquire(self, wait_s: float | None = None) -> S3Lock:
        wait_s = self.ttl_s + 2 * self.heartbeat_s if wait_s is None else wait_s
        deadline = time.monotonic() + wait_s
        ensure_bucket(self.bucket)
        while True:
            etag = self._put({"If-None-Match": "*"})
            if etag is None:
                holder, held_etag = self._get()
                if holder is None:
                    continue  # released between our put and our read
                if holder.get("run_id") == self.info["run_id"]:
                    etag = held_etag  # our own create succeeded but its answer was lost; the retry saw it
                elif is_stale(holder, self.ttl_s):
                    etag = self._put({"If-Match": f'"{held_etag}"'})
                    if etag is not None:
                        log.warning("%s: took over the stale lock of %s", self.uri, describe(holder))
                if etag is None:
                    if time.monotonic() >= deadline:
                        raise self._held_error(holder)
                    time.sleep(min(POLL_S, self.heartbeat_s, max(0.0, deadline - time.monotonic())))
                    continue
            self.etag = etag
            break
        self._thread = threading.Thread(target=self._beat, name=f"lock-heartbeat {self.key}", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._mutex:
                self.info["heartbeat"] = time.time()
                try:
                    etag = self._put({"If-Match": f'"{self.etag}"'})
                except StorageError as exc:  # the server is away; the next beat tries again
                    log.warning("%s: heartbeat failed: %s", self.uri, exc)
                    continue
                if etag is None:
                    holder, _ = self._get()
                    self.lost = describe(holder)
                    log.error("%s: lock taken over by %s", self.uri, self.lost)
                    return
                self.etag = etag

    def check(self) -> None:
        """Raise LockLost unless the lock object is still ours (read now, not only at the last heartbeat)."""
        if self.lost is None:
            holder, _ = self._get()
            if not holder or holder.get("run_id") != self.info["run_id"]:
                self.lost = describe(holder) if holder else "nobody (the lock object is gone)"
        if self.lost is not None:
            raise LockLost(f"{self.uri}: this writer's lock is now held by {self.lost}; not publishing")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._mutex:
            if self.lost is None and self.etag is not None:
                holder, _ = self._get()
                if holder and holder.get("run_id") == self.info["run_id"]:
                    retry(f"{self.uri}: unlock", lambda: client(self.uri).remove_object(self.bucket, self.key))
            self.etag = None
