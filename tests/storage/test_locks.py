"""One writer per output: the local flock and the S3 conditional-write lock refuse a second writer naming the
first, free a dead writer's lock, and tell a writer whose lock was taken over before it publishes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from finegrain import storage
from finegrain.storage.locks import LOCK_NAME, LocalLock, LockHeld, LockLost, S3Lock, hold_lock, is_stale
from tests.support.paths import REPO

SRC = str(REPO / "src")


def test_local_second_writer_is_refused_naming_the_first(tmp_path: Path) -> None:
    uri = str(tmp_path / "member" / LOCK_NAME)
    with hold_lock(uri, "writer one") as first:
        with pytest.raises(LockHeld) as info, hold_lock(uri, "writer two"):
            pass
        message = str(info.value)
        assert first.info["run_id"] in message and "writer one" in message and f"pid {os.getpid()}" in message
        assert uri in message
    assert not Path(uri).exists()  # released: the file goes with it
    with hold_lock(uri, "writer two"):
        pass


def test_local_lock_of_a_killed_writer_is_free_at_once(tmp_path: Path) -> None:
    uri = str(tmp_path / LOCK_NAME)
    code = f"from finegrain.storage.locks import hold_lock\nimport time\nwith hold_lock({uri!r}, 'child'):\n" \
           "    print('held', flush=True)\n    time.sleep(120)\n"  # fmt: skip
    env = {**os.environ, "PYTHONPATH": SRC}
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=f"pid {child.pid}"), hold_lock(uri, "parent"):
            pass
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert Path(uri).exists()  # the dead writer left its file behind...
    with hold_lock(uri, "parent") as lock:  # ...but not its lock
        assert json.loads(Path(uri).read_text())["run_id"] == lock.info["run_id"]


def test_local_check_fails_when_the_lock_file_was_replaced(tmp_path: Path) -> None:
    uri = str(tmp_path / LOCK_NAME)
    lock = LocalLock(uri, "w").acquire()
    try:
        lock.check()
        os.unlink(uri)
        Path(uri).write_text("{}")
        with pytest.raises(LockLost):
            lock.check()
    finally:
        lock.release()
    assert Path(uri).read_text() == "{}"  # not ours: release leaves it alone


def _holder(**fields) -> dict:
    now = time.time()
    base = {"run_id": "other", "what": "other writer", "host": "elsewhere", "pid": 1, "started": "-",
            "created": now, "heartbeat": now}  # fmt: skip
    return {**base, **fields}


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_staleness_rules() -> None:
    assert not is_stale(_holder(), ttl_s=60)
    assert is_stale(_holder(heartbeat=time.time() - 61), ttl_s=60)
    assert is_stale(_holder(host=socket.gethostname(), pid=_dead_pid()), ttl_s=60)
    assert not is_stale(_holder(host=socket.gethostname(), pid=os.getpid()), ttl_s=60)
    assert not is_stale(_holder(host="elsewhere", pid=_dead_pid()), ttl_s=60)  # not our pid namespace


@pytest.mark.timeout(120)
def test_s3_second_writer_is_refused_then_gets_the_released_lock(s3_bucket: str) -> None:
    uri = f"{s3_bucket}/train/b/fold0/{LOCK_NAME}"
    first = S3Lock(uri, "writer one", heartbeat_s=3600).acquire(wait_s=0)
    try:
        with pytest.raises(LockHeld, match=f"run {first.info['run_id']} \\(writer one\\)"):
            S3Lock(uri, "writer two").acquire(wait_s=0)
        first.check()
    finally:
        first.release()
    assert not storage.exists(uri)
    second = S3Lock(uri, "writer two", heartbeat_s=3600).acquire(wait_s=0)
    second.release()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stale", ["old heartbeat", "dead pid on this host", "not a lock"])
def test_s3_stale_lock_is_taken_over(s3_bucket: str, stale: str) -> None:
    uri = f"{s3_bucket}/m/{LOCK_NAME}"
    if stale == "old heartbeat":
        storage.write_text(uri, json.dumps(_holder(heartbeat=time.time() - 10_000)))
    elif stale == "dead pid on this host":
        storage.write_text(uri, json.dumps(_holder(host=socket.gethostname(), pid=_dead_pid())))
    else:  # nothing a writer of ours wrote: no heartbeat, so stale
        storage.write_text(uri, "not json at all")
    lock = S3Lock(uri, "new writer", heartbeat_s=3600).acquire(wait_s=0)
    try:
        assert json.loads(storage.read_text(uri))["run_id"] == lock.info["run_id"]
    finally:
        lock.release()


@pytest.mark.timeout(120)
def test_s3_live_holder_is_not_taken_over(s3_bucket: str) -> None:
    uri = f"{s3_bucket}/m/{LOCK_NAME}"
    storage.write_text(uri, json.dumps(_holder(host=socket.gethostname(), pid=os.getpid())))
    with pytest.raises(LockHeld, match="other writer"):
        S3Lock(uri, "new writer").acquire(wait_s=0)
    assert json.loads(storage.read_text(uri))["run_id"] == "other"


@pytest.mark.timeout(120)
def test_s3_heartbeat_refreshes_the_lock(s3_bucket: str) -> None:
    uri = f"{s3_bucket}/m/{LOCK_NAME}"
    lock = S3Lock(uri, "w", heartbeat_s=0.05).acquire(wait_s=0)
    try:
        first = json.loads(storage.read_text(uri))["heartbeat"]
        while json.loads(storage.read_text(uri))["heartbeat"] == first:  # bounded by the test timeout
            time.sleep(0.05)
        lock.check()
    finally:
        lock.release()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("heartbeat_s", [3600, 0.05])
def test_s3_writer_whose_lock_was_taken_over_learns_it(s3_bucket: str, heartbeat_s: float) -> None:
    uri = f"{s3_bucket}/m/{LOCK_NAME}"
    lock = S3Lock(uri, "slow writer", heartbeat_s=heartbeat_s).acquire(wait_s=0)
    try:
        storage.write_text(uri, json.dumps(_holder(what="the writer that took over")))
        if heartbeat_s < 1:
            while lock.lost is None:  # the heartbeat's conditional put fails; bounded by the test timeout
                time.sleep(0.05)
        with pytest.raises(LockLost, match="the writer that took over"):
            lock.check()
    finally:
        lock.release()
    assert json.loads(storage.read_text(uri))["run_id"] == "other"  # release never removes another's lock
