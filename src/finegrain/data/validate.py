"""Decode one image file defensively: classify it as usable or corrupt, and turn the odd-but-usable ones into RGB.

`check_image(data, max_pixels=..., min_side=...)` never raises on bad input; it returns a `CheckedImage` whose
`status` is "ok" or "corrupt" and whose `reason` says why (for "ok" images, what was converted). Nothing here
touches the source file: conversions (alpha, CMYK, grayscale, 16-bit, EXIF rotation) happen in memory only.

The pixel limit is checked on the header size *before* any pixel data is decoded, so a decompression bomb costs
a few hundred bytes of parsing, not gigabytes of memory.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# EXIF orientation tag; values 2..8 mean the stored pixels must be flipped/rotated before display.
_ORIENTATION = 0x0112


@dataclass
class CheckedImage:
    """The outcome of decoding one file. `image` is RGB when status == "ok", else None."""

    status: str  # "ok" or "corrupt" ("unread" in a scan row: the bytes could not be read, nothing was judged)
    reason: str  # why corrupt; for ok images the conversions applied ("" when none)
    width: int = 0  # after EXIF rotation; 0 when the header could not be read
    height: int = 0
    image: Image.Image | None = None


def _corrupt(reason: str, width: int = 0, height: int = 0) -> CheckedImage:
    return CheckedImage("corrupt", reason, width, height)


def _to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    """Convert any decoded mode to 8-bit RGB, noting what was done (the notes end up in the manifest)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # PIL's own I;16 -> RGB conversion clips at 255 (a white image); scale the real range instead.
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr8 = np.clip(arr * (255.0 / hi) + 0.5, 0, 255).astype(np.uint8)
        notes.append(f"{mode} 16-bit scaled to 8-bit")
        return Image.fromarray(arr8, "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        arr8 = (
            np.zeros(arr.shape, np.uint8)
            if hi <= lo
            else ((arr - lo) / (hi - lo) * 255 + 0.5).astype(np.uint8)
        )
        notes.append("float image rescaled to 8-bit")
        return Image.fromarray(arr8, "L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        # Flatten on white: transparent product photos are shot on white, and black would add a fake edge.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        notes.append(f"{mode} alpha flattened on white")
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    elif mode in ("L", "1"):
        notes.append("grayscale converted to RGB")
    elif mode != "P":
        notes.append(f"{mode} converted to RGB")
    return img.convert("RGB")


def check_image(
    data: bytes,
    *,
    max_pixels: int,
    min_side: int = 1,
    draft_size: int | None = None,
    gray: bool = False,
) -> CheckedImage:
    """Decode `data` fully (so truncation is caught) and return it as RGB, or say why it is unusable.

    draft_size: for JPEG, decode at a reduced DCT scale (1/2, 1/4 or 1/8) whose result is still at least this
        many pixels on each side. Every scanline of the entropy-coded stream is still decoded, so truncated files
        are still detected, at 1.5-2x less cost than a full decode.
    gray: return an L (8-bit gray) image instead of RGB. A colour JPEG is then decoded as its luma channel alone,
        skipping chroma upsampling and colour conversion; the reason still lists what the RGB path would have
        converted (training reads the file as RGB).
    """
    if not data:
        return _corrupt("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own limit is applied below; PIL's warning/error for huge headers must not escape or abort.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        return _corrupt(f"decompression bomb refused before decoding: {exc}")
    except UnidentifiedImageError:
        return _corrupt(f"not an image: no known image format recognised ({len(data)} bytes)")
    except Exception as exc:  # noqa: BLE001 - any parser failure on a file is that file's problem, not the run's
        return _corrupt(f"unreadable image header: {type(exc).__name__}: {exc}")

    width, height = img.size
    source_mode = img.mode
    if width * height > max_pixels:
        return _corrupt(
            f"decompression bomb refused before decoding: {width}x{height} = {width * height:,} pixels "
            f"> preprocess.max_pixels {max_pixels:,}",
            width,
            height,
        )
    if min(width, height) < min_side:
        return _corrupt(f"too small: {width}x{height} < preprocess.min_side {min_side}", width, height)

    notes: list[str] = []
    try:
        orientation = int(img.getexif().get(_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not make the pixels unusable
        orientation = 1
        notes.append("unreadable EXIF ignored")
    try:
        if img.format == "JPEG" and (draft_size or gray):
            img.draft("L" if gray else "RGB", (draft_size, draft_size) if draft_size else img.size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
    except Exception as exc:  # noqa: BLE001 - truncated, bad Huffman tables, broken PNG chunks, ...
        return _corrupt(f"corrupt {img.format or 'image'} data: {type(exc).__name__}: {exc}", width, height)
    if getattr(img, "n_frames", 1) > 1:
        notes.append(f"first of {img.n_frames} frames used")
    if orientation in range(2, 9):
        img = ImageOps.exif_transpose(img)
        notes.append(f"EXIF orientation {orientation} applied")
        if orientation in (5, 6, 7, 8):
            width, height = height, width
    try:
        if gray and img.mode == "L" and source_mode != "L":
            out = img  # a colour JPEG decoded as luma: nothing the RGB path would have noted
        else:
            out = _to_rgb(img, notes)
            out = out.convert("L") if gray else out
    except Exception as exc:  # noqa: BLE001
        return _corrupt(f"cannot convert {img.mode} image to RGB: {type(exc).__name__}: {exc}", width, height)
    return CheckedImage("ok", "; ".join(notes), width, height, out)


# Read failures that another attempt cannot fix: the file is gone or forbidden. Anything else (S3 down after
# the storage layer's retries, a network file system's EIO) may pass, so the batch is rerun later.
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def _is_transient(exc: BaseException) -> bool:
    from finegrain import s3client

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
    from finegrain.workers import TransientReadError

    try:
        return storage.read_bytes(uri), ""
    except Exception as exc:  # noqa: BLE001 - sorted into "retry later" and "cannot be read", both reported
        why = f"{type(exc).__name__}: {exc}"
        if _is_transient(exc):
            raise TransientReadError(uri, why) from None
        return None, why


def scan_images(uris: list[str], max_pixels: int, min_side: int) -> list[dict]:
    """Everything preprocess needs from each file: sha256, status/reason, size, pHashes and thumbnail.

    Runs in worker processes on a chunk of files at a time (the pHashes of a chunk are one vectorised DCT), so it
    takes and returns plain picklable values. A file that cannot be read for good gets status "unread" (the
    caller fails the step on it: never a manifest status); one whose read may pass later raises
    TransientReadError for the whole chunk.
    """
    from finegrain.data.dedup import THUMB, hash_hex, phashes, small_grays

    out, smalls = [], []
    for uri in uris:
        data, read_error = read_file(uri)  # a transient failure raises: the whole batch is rerun later
        # The pHashes (32 px) and the thumbnail (THUMB px) need no more than THUMB pixels a side, and no colour: a
        # JPEG is decoded at a reduced DCT scale, luma only (the pair check decodes its candidates again, in full).
        checked = (
            check_image(data, max_pixels=max_pixels, min_side=min_side, draft_size=THUMB, gray=True)
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
            "phash_inner": "",
            "thumb": None,
        }
        if checked.image is not None:
            small, row["thumb"] = small_grays(checked.image)
            smalls.append((row, small))
        out.append(row)
    if smalls:
        hashes = phashes(np.stack([small for _, small in smalls]))
        for (row, _), (whole, inner) in zip(smalls, hashes.tolist()):
            row["phash"], row["phash_inner"] = hash_hex(whole), hash_hex(inner)
    return out


def scan_image(uri: str, max_pixels: int, min_side: int) -> dict:
    """scan_images for one file."""
    return scan_images([uri], max_pixels, min_side)[0]
