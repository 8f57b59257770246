"""Thumbnails that the pool's workers write and read in place: one memory-mapped file per preprocess run.

    store = ThumbStore.create(n, directory)   # n x DETAIL x DETAIL uint8, zeros
    picture = store.keep(row, thumb, ...)     # a scan worker writes row `row`; a Picture viewing it
    pickle.dumps(picture)                     # ~1 KB: the store's path and the row, not the 16 KB thumbnail

Without it every thumbnail crossed a pipe twice: pickled back from the scan worker to the parent, and pickled out
again to the check's workers with each batch of pairs (29 MB each way for the 1,752-picture bench set): ~0.1 s
of CPU a run between the parent's threads and the workers, pickling, unpickling and pipe writes in 64 KB steps,
on the cores the workers need. The file lives in the worker pool's scratch directory (workers.scratch_dir),
removed with the pool; the parent's views stay valid after that (an unlinked file stays mapped until its last
view goes). Its pages are the page cache's: the thumbnails the parent keeps cost no heap, and where the temporary
directory is on disk the kernel may write them out under memory pressure.
"""

from __future__ import annotations

import os
import uuid
import weakref
from pathlib import Path

import numpy as np

from finegrain.preprocess.dedup.normalize import DETAIL, Picture

# path -> this process's mapping, while any picture still views it: a process maps a run's file once, and a
# long-lived parent (a notebook, the tests) unmaps it once the run's pictures are gone.
_OPEN: weakref.WeakValueDictionary[str, np.memmap] = weakref.WeakValueDictionary()


class ThumbStore:
    """n thumbnails of DETAIL x DETAIL uint8 in one file, mapped by every process that unpickles the store."""

    def __init__(self, path: str, n: int) -> None:
        self.path, self.n = path, n

    @classmethod
    def create(cls, n: int, directory: str | Path) -> ThumbStore:
        path = str(Path(directory) / f"thumbs-{uuid.uuid4().hex}.u8")
        with open(path, "wb") as f:
            f.truncate(max(1, n) * DETAIL * DETAIL)  # sparse: pages appear as workers write them
        return cls(path, n)

    def __reduce__(self):
        return ThumbStore, (self.path, self.n)

    @property
    def array(self) -> np.memmap:
        mapped = _OPEN.get(self.path)
        if mapped is None:
            if not os.path.exists(self.path):
                raise FileNotFoundError(f"thumbnail store {self.path} is gone (its worker pool was closed)")
            mapped = _OPEN[self.path] = np.memmap(self.path, np.uint8, "r+", shape=(self.n, DETAIL, DETAIL))
        return mapped

    def keep(self, row: int, thumb: np.ndarray, tiny: np.ndarray, size, trim, orientation: int) -> Picture:
        """Write `thumb` as row `row` and return the Picture viewing it (pickled by reference: _stored)."""
        self.array[row] = thumb
        return _stored(self, row, tiny, size, trim, orientation)


def _stored(store: ThumbStore, row: int, tiny: np.ndarray, size, trim, orientation: int) -> Picture:
    """A Picture whose thumbnail is row `row` of `store`; it pickles as these arguments again."""
    return _StoredPicture(np.asarray(store.array[row]), tiny, tuple(size), tuple(trim), orientation, store, row)


class _StoredPicture(Picture):
    """A Picture whose thumbnail lives in a ThumbStore: pickling sends the store and the row, not the pixels."""

    def __init__(self, thumb, tiny, size, trim, orientation, store: ThumbStore, row: int) -> None:
        super().__init__(thumb, tiny, size, trim, orientation)
        object.__setattr__(self, "_where", (store, row))

    def __reduce__(self):
        store, row = self._where
        return _stored, (store, row, self.tiny, self.size, self.trim, self.orientation)
