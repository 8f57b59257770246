"""Read and validate the dataset's files for the preprocess scan: sha256, verdict, size, pHash, thumbnail.

Validity is decided by finegrain.data.decode (the decoder training and serving use): `check_image` there
never raises on bad input; it returns status "ok" or "corrupt" and a reason. A file whose bytes cannot be
read is not judged at all (see read_file): storage failures are never an image status.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

from finegrain.data.decode import CheckedImage, check_image

if TYPE_CHECKING:
    from finegrain.preprocess.dedup.store import ThumbStore

__all__ = ["CheckedImage", "check_image", "read_file", "scan_image", "scan_images"]

# Read failures that another attempt cannot fix: the file is gone or forbidden. Anything else (S3 down after
# the storage layer's retries, a network file system's EIO) may pass, so the batch is rerun later.
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def _is_transient(exc: BaseException) -> bool:
    from finegrain.storage import s3client

    if isinstance(exc, _PERMANENT):
        return False
    if isinstance(exc, s3client.StorageError):
        # retry() wraps the last error as __cause__: transient ones (refused, reset, 5xx) ran out of retries,
        # the rest (access denied, no endpoint configured) will not change by waiting.
        return exc.__cause__ is not None and s3client.is_transient(exc.__cause__)
    return isinstance(exc, OSError)


def read_file(uri: str) -> tuple[bytes | None, str]:
    """(bytes, "") or (None, why) for a file that cannot be read for good (missing, permission, a directory).

    Raises TransientReadError when the read may succeed later. Either way it is the storage's problem, not the
    file's: the caller must never turn it into an image status.
    """
    from finegrain import storage
    from finegrain.preprocess.workers import TransientReadError

    try:
        return storage.read_bytes(uri), ""
    except Exception as exc:  # noqa: BLE001 - sorted into "retry later" and "cannot be read", both reported
        why = f"{type(exc).__name__}: {exc}"
        if _is_transient(exc):
            raise TransientReadError(uri, why) from None
        return None, why


def scan_images(
    uris: list[str], max_pixels: int, min_side: int, store: ThumbStore | None = None, first_row: int = 0
) -> list[dict]:
    """Everything preprocess needs from each file: sha256, status/reason, size, pHash and the near-duplicate
    check's picture (dedup.normalize.Picture: thumbnail, tiny features, trim, orientation).

    store: where the thumbnails go (dedup.store; the files are rows first_row, first_row + 1, ... of it), so that
    a worker returns each picture by reference; None: the pictures carry their thumbnails.

    Runs in worker processes on a chunk of files at a time (the hashes and tiny features of a chunk are computed
    together), so it takes and returns plain picklable values. A file that cannot be read for good gets status
    "unread" (the caller fails the step on it: never a manifest status); one whose read may pass later raises
    TransientReadError for the whole chunk.
    """
    from finegrain.preprocess.dedup.hashing import hash_hex
    from finegrain.preprocess.dedup.normalize import DETAIL, Picture, thumb_phashes, thumbnail, tiny_features

    out, seen = [], []
    for position, uri in enumerate(uris):
        data, read_error = read_file(uri)  # a transient failure raises: the whole batch is rerun later
        # The thumbnail (DETAIL px) needs no more pixels than that a side, and no colour: a JPEG is decoded at a
        # reduced DCT scale, luma only. Every later near-duplicate step works from it: no file is read again.
        checked = (
            check_image(data, max_pixels=max_pixels, min_side=min_side, draft_size=DETAIL, gray=True)
            if data is not None
            else CheckedImage("unread", read_error)
        )
        row = {
            "sha256": hashlib.sha256(data).hexdigest() if data is not None else "",
            "nbytes": len(data) if data is not None else 0,
            "status": checked.status,
            "reason": checked.reason,
            "width": checked.width,
            "height": checked.height,
            "phash": "",
            "thumb": None,
        }
        if checked.image is not None:
            thumb, trim = thumbnail(np.asarray(checked.image))
            seen.append((first_row + position, row, thumb, trim, checked.orientation))
        out.append(row)
    if seen:
        thumbs = np.stack([thumb for _, _, thumb, _, _ in seen])
        hashes, tiny = thumb_phashes(thumbs), tiny_features(thumbs)
        for k, (at, row, thumb, trim, orientation) in enumerate(seen):
            row["phash"] = hash_hex(int(hashes[k]))
            size = (row["width"], row["height"])
            row["thumb"] = (
                Picture(thumb, tiny[k], size, trim, orientation)
                if store is None
                else store.keep(at, thumb, tiny[k], size, trim, orientation)
            )
    return out


def scan_image(uri: str, max_pixels: int, min_side: int) -> dict:
    """scan_images for one file."""
    return scan_images([uri], max_pixels, min_side)[0]
