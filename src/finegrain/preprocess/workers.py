"""The preprocess step's worker processes: one pool for scanning and confirming, and an ordered map over it.

    with worker_pool(cfg.preprocess.workers) as pool:        # None for one worker: everything runs inline
        results = map_batches(fn, batches, sizes, "hashing", "img", pool, rounds=5)
        scratch_dir(pool)                                     # a directory the pool's processes share, or None

A batch whose storage read fails after the storage layer's own retries raises TransientReadError; map_batches
then stops handing out batches (a dead server would otherwise cost every remaining batch its full retry
time), waits, and reruns the failed and unstarted batches, up to `rounds` times. A read that still fails is
UnreadableFilesError naming the files: a storage outage ends the step, it never becomes a data verdict.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from tqdm import tqdm

from finegrain.storage import s3client
from finegrain.storage.s3client import StorageError

log = logging.getLogger("finegrain.preprocess.workers")

# What the workers run (steps.preprocess and what it imports: validate, dedup, confirm): the fork server
# imports it once, each worker is forked from the server ready to go.
_WORKER_MODULES = ["finegrain.steps.preprocess"]


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """One process pool for the whole step (hashing, then confirmation); None when running inline.

    Fork server, not fork: a child forked from this process would share its open S3 connection pool and any
    threads' locks; the fork server is a fresh interpreter that only imported _WORKER_MODULES, so a worker
    starts in milliseconds instead of paying a new interpreter plus our imports (~0.7 s each with spawn, which
    is the fallback where there is no fork server). The server lives as long as this process, so later runs
    (tests, notebooks) reuse it. The workers are started at once, so the server boots while the parent lists
    the dataset.
    """
    if workers <= 1:
        yield None
        return
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_WORKER_MODULES)  # only takes effect when the server first starts
    else:
        ctx = multiprocessing.get_context("spawn")
    settings = {k: v for k, v in os.environ.items() if k.startswith(_WORKER_ENV)}
    # The scratch directory outlives the pool: it is removed once the workers have exited.
    with (
        tempfile.TemporaryDirectory(prefix="finegrain-preprocess-") as scratch,
        ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(settings, s3client.DEFAULT_RETRIES)
        ) as pool,
    ):
        _SCRATCH[pool] = scratch
        for _ in range(workers):
            pool.submit(os.getpid)  # a no-op task: the executor starts one worker per task submitted
        yield pool


# Each pool's scratch directory (worker_pool), removed after the pool's workers have exited.
_SCRATCH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def scratch_dir(pool: ProcessPoolExecutor | None) -> str | None:
    """A directory the pool's workers and this process share for the pool's lifetime (dedup.store keeps the
    thumbnails there); None inline or for a pool worker_pool did not make."""
    return None if pool is None else _SCRATCH.get(pool)


# Storage settings the workers must see as the parent sees them now: a fork-server child inherits the server's
# environment, frozen when the server started (possibly before a notebook or test set its S3 endpoint).
_WORKER_ENV = ("FINEGRAIN_", "AWS_", "MINIO_", "MLFLOW_S3_")


def _init_worker(settings: dict[str, str], retries: int) -> None:
    """Worker initializer: the parent's storage settings (environment and the configured storage.retries, which
    `storage.configure` set in the parent only); one OpenCV thread (the pool has a process per core)."""
    import cv2

    for key in [k for k in os.environ if k.startswith(_WORKER_ENV) and k not in settings]:
        del os.environ[key]
    os.environ.update(settings)
    s3client.DEFAULT_RETRIES = retries
    cv2.setNumThreads(1)


def storage_rounds(cfg) -> int:
    """How many times preprocess reruns the batches a storage failure interrupted: storage.retries, or
    FINEGRAIN_S3_RETRIES (which wins, as in the storage layer). With the storage layer's own retries per read
    (0.5 s doubling to 8 s) and pauses of 8 s doubling to 30 s between reruns, the default 5 rides out a
    server down for about three minutes; past that the step fails naming the files."""
    return int(os.environ.get("FINEGRAIN_S3_RETRIES", cfg.storage.retries))


class TransientReadError(Exception):
    """Raised by a batch function when reading `uri` failed in a way that may pass (S3 down, network, NFS).

    The batch is abandoned and rerun later by map_batches; the file is not judged. Plain (uri, reason) args so
    it pickles back from a worker process.
    """

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(uri, reason)
        self.uri, self.reason = uri, reason

    def __str__(self) -> str:
        return f"{self.uri}: {self.reason}"


class UnreadableFilesError(StorageError):
    """Files could not be read (for good, or still after every retry); the message names them (first few, count)."""


def unreadable_message(what: str, failures: list[tuple[str, str]], hint: str, show: int = 10) -> str:
    """'<what>: N file(s) ...' with the first `show` (uri: reason) lines and how many more."""
    lines = [f"  {uri}: {reason}" for uri, reason in failures[:show]]
    if len(failures) > show:
        lines.append(f"  ... and {len(failures) - show} more")
    return f"{what}: {len(failures)} file(s) could not be read; {hint}\n" + "\n".join(lines)


def map_batches(
    fn: Callable,
    batches: list,
    sizes: list[int],
    desc: str,
    unit: str,
    pool: ProcessPoolExecutor | None,
    rounds: int = 0,
    pause_s: float = 8.0,
) -> list:
    """[fn(batch) for batch in batches] on the pool, in order, with a progress bar counting `sizes` (items per
    batch); inline without a pool or for a handful of items (a worker round trip costs more than they do).

    A batch raising TransientReadError is rerun, with the batches not started yet, after a pause (`pause_s`,
    doubling, at most 30 s), up to `rounds` times; then UnreadableFilesError lists the files that failed.
    """
    inline = pool is None or sum(sizes) < 16
    results: list = [None] * len(batches)
    todo = list(range(len(batches)))
    with tqdm(total=sum(sizes), desc=desc, unit=unit, leave=False) as bar:
        for attempt in range(rounds + 1):
            run = _run_inline if inline else _run_pooled
            failed = run(fn, batches, todo, results, lambda i: bar.update(sizes[i]), pool)
            if not failed:
                return results
            errors = [e for e in failed.values() if e is not None]
            if attempt < rounds:
                pause = min(pause_s * 2**attempt, 30.0)
                log.warning(
                    "%s: %d file(s) unreadable (first: %s); %d batch(es) rerun in %.0f s (round %d/%d)",
                    desc, len(errors), errors[0], len(failed), pause, attempt + 1, rounds,
                )  # fmt: skip
                time.sleep(pause)
            todo = sorted(failed)
    unread = sum(sizes[i] for i in todo)
    raise UnreadableFilesError(
        unreadable_message(
            desc, [(e.uri, e.reason) for e in errors],
            f"storage still failing after {rounds} rerun(s) (storage.retries / FINEGRAIN_S3_RETRIES), {unread} "
            "file(s) left unjudged. A storage problem, not a data problem: nothing was marked corrupt; rerun when "
            "storage is back:",
        )
    )  # fmt: skip


def _run_inline(fn, batches, todo, results, done, pool) -> dict[int, TransientReadError | None]:
    """One round in this process; a failure skips the rest of the round (None: not started)."""
    for n, i in enumerate(todo):
        try:
            results[i] = fn(batches[i])
        except TransientReadError as exc:
            return {i: exc, **{j: None for j in todo[n + 1 :]}}
        done(i)
    return {}


def _run_pooled(fn, batches, todo, results, done, pool) -> dict[int, TransientReadError | None]:
    """One round on the pool; the first failure cancels the batches not started yet (None in the answer)."""
    futures: dict[Future, int] = {pool.submit(fn, batches[i]): i for i in todo}
    pending, failed = set(futures), {}
    while pending:
        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
        for fut in finished:
            i, exc = futures[fut], (None if fut.cancelled() else fut.exception())
            if fut.cancelled():
                failed[i] = None
            elif exc is None:
                results[i] = fut.result()
                done(i)
            elif isinstance(exc, TransientReadError):
                failed[i] = exc
            else:
                for f in pending:
                    f.cancel()
                raise exc
        if failed:
            for f in [f for f in pending if f.cancel()]:
                failed[futures[f]] = None
                pending.discard(f)
    return failed
