"""The preprocess step's worker processes: one pool for scanning and confirming, and an ordered map over it.

    with worker_pool(cfg.preprocess.workers) as pool:        # None for one worker: everything runs inline
        results = map_batches(fn, batches, sizes, "hashing", "img", pool)
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor

from tqdm import tqdm

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
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(settings,)) as pool:
        for _ in range(workers):
            pool.submit(os.getpid)  # a no-op task: the executor starts one worker per task submitted
        yield pool


# Storage settings the workers must see as the parent sees them now: a fork-server child inherits the server's
# environment, frozen when the server started (possibly before a notebook or test set its S3 endpoint).
_WORKER_ENV = ("FINEGRAIN_", "AWS_", "MINIO_", "MLFLOW_S3_")


def _init_worker(settings: dict[str, str]) -> None:
    """Worker initializer: the parent's storage settings; one OpenCV thread (the pool has a process per core)."""
    import cv2

    for key in [k for k in os.environ if k.startswith(_WORKER_ENV) and k not in settings]:
        del os.environ[key]
    os.environ.update(settings)
    cv2.setNumThreads(1)


def map_batches(
    fn: Callable, batches: list, sizes: list[int], desc: str, unit: str, pool: ProcessPoolExecutor | None
) -> list:
    """[fn(batch) for batch in batches] on the pool, in order, with a progress bar counting `sizes` (items per
    batch); inline without a pool or for a handful of items (a worker round trip costs more than they do)."""
    total = sum(sizes)
    results = map(fn, batches) if pool is None or total < 16 else pool.map(fn, batches)
    out = []
    with tqdm(total=total, desc=desc, unit=unit, leave=False) as bar:
        for size, result in zip(sizes, results):
            out.append(result)
            bar.update(size)
    return out
