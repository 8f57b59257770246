"""What the near-duplicate search and check keep of each picture: a normalised thumbnail and tiny pictures.

    thumb, trim = thumbnail(gray)             # DETAIL x DETAIL uint8, borders trimmed (what the check compares)
    view = small_view(thumb)                  # THUMB x THUMB float32, lightly blurred (alignment, features)
    tiny = tiny_features(np.stack(thumbs))    # [n, 3, 64] unit vectors: whole, mirrored, inner crop
    Picture(thumb, tiny[i], size, trim, orientation)  # what the scan keeps of each picture

Copies people make change what a plain comparison sees: a letterbox adds bars, an EXIF-turned file stores its
pixels sideways, a mirror reverses the picture, a crop scaled back zooms it. So the scan decodes with the EXIF
orientation applied and trims letterbox bars before the thumbnail (trim_borders: bars alike on two opposite
sides, or pure black or white on one; a soft photo fading into a flat edge keeps it), and the search correlates
three tiny pictures of each: the whole, its mirror image (a flipped copy's whole lands near it) and an inner crop
(a copy cropped at the edges and scaled back lands near it). Correlations do not see brightness or contrast; the check
undoes the rest of a tone change itself (match.py). The manifest's `phash` is the classic pHash of the thumbnail.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

# Side of the thumbnail kept per picture: 16 KiB, 540 MB at Hecto's 33k pictures (with a worker pool, in a
# memory-mapped file in the pool's scratch directory, not on the heap: dedup.store).
DETAIL = 128
THUMB = 64  # side of the views the alignment and the tiny pictures use
INNER = 0.06  # the inner-crop hash drops this share of each side: the middle of the 1-10 % crops people make
_BAR_TOL = 12  # grey levels a bar row/column may differ from the bar's colour (JPEG ringing, noise)
_MAX_TRIM = 0.35  # never trim more than this share of a side: a picture is not mostly border
_PURE = 8  # grey levels from black or white within which a bar on one side alone still counts (_bars)


@dataclass(frozen=True)
class Picture:
    """What the near-duplicate search and check keep of one picture (~17 KB; nothing is read again)."""

    thumb: np.ndarray  # DETAIL x DETAIL uint8 gray, borders trimmed, EXIF orientation applied
    tiny: np.ndarray  # [3, TINY * TINY] float32: tiny_features (whole, mirrored, inner crop)
    size: tuple[int, int]  # width, height as shown (after the EXIF orientation)
    trim: tuple[float, float, float, float]  # bars trimmed off (left, top, right, bottom shares)
    orientation: int  # EXIF orientation applied to the stored pixels (1: none)


def _trim_side(lines: np.ndarray, limit: int) -> tuple[int, int]:
    """How many leading lines (rows of `lines`) are a uniform bar of the first line's colour, and that colour."""
    first = lines[0]
    low, high = int(first.min()), int(first.max())
    colour = (low + high) // 2  # the middle of the line's range: a uniform line is within _BAR_TOL of it
    if high - low > 2 * _BAR_TOL:
        return 0, colour  # most photos: the outermost line is no bar, and nothing more is read
    far = np.abs(lines[1:limit].astype(np.int16) - colour).max(axis=1) > _BAR_TOL
    return (1 + int(np.argmax(far)) if far.any() else limit), colour


def _bars(near: tuple[int, int], far: tuple[int, int], side: int) -> tuple[int, int]:
    """The bars kept on two opposite sides, (lines, colour) each. A letterbox or padding frames the picture on
    both sides alike, in one colour; a soft photo (a sky, a dark studio backdrop, bokeh) may fade into a band
    that passes for a bar on one side, or on both at other widths or levels: no bars then. A lone bar counts
    only when it is pure black or white (a picture pasted into a corner of a blank frame)."""
    (n1, c1), (n2, c2) = near, far
    if n1 and n2 and abs(c1 - c2) <= _BAR_TOL and abs(n1 - n2) <= max(2, 0.1 * side):
        return n1, n2
    pure = [n if n and (c <= _PURE or c >= 255 - _PURE) and not other else 0
            for (n, c), other in ((near, n2), (far, n1))]  # fmt: skip
    return pure[0], pure[1]


def trim_borders(gray: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The picture without uniform bars (letterbox, padding) on its edges, and what was cut as shares of each
    side (left, top, right, bottom). A side is trimmed only where its outermost line is itself uniform, and
    only as a letterbox or padding frames a picture (_bars)."""
    h, w = gray.shape
    ly, lx = int(h * _MAX_TRIM), int(w * _MAX_TRIM)
    top, bottom = _bars(_trim_side(gray, ly), _trim_side(gray[::-1], ly), h)
    left, right = _bars(_trim_side(gray.T, lx), _trim_side(gray.T[::-1], lx), w)
    inner = gray[top : h - bottom, left : w - right]
    if (
        inner.size == 0 or int(inner.max()) - int(inner.min()) <= 2 * _BAR_TOL
    ):  # a flat picture: no bars, no picture
        return gray, (0.0, 0.0, 0.0, 0.0)
    return inner, (left / w, top / h, right / w, bottom / h)


def thumbnail(gray: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """DETAIL x DETAIL uint8 thumbnail of a gray picture, borders trimmed; and the trim (shares of each side)."""
    inner, trim = trim_borders(np.asarray(gray, dtype=np.uint8))
    # Halve with a Gaussian (pyrDown) while at least twice the size, then bilinear: the same picture at any
    # resolution gives nearly the same thumbnail, at 35 us where one INTER_AREA resize by a fractional factor
    # took 170 (a fifth of the scan's time per picture).
    while min(inner.shape) >= 2 * DETAIL:
        inner = cv2.pyrDown(inner)
    return cv2.resize(inner, (DETAIL, DETAIL), interpolation=cv2.INTER_LINEAR), trim


def small_view(thumb: np.ndarray) -> np.ndarray:
    """THUMB x THUMB float32 view of a thumbnail, lightly blurred (JPEG and resampling noise is finer than that):
    what the alignment and the tiny pictures work on. Not equalised: equalising a flat picture amplifies its noise
    until a mere resize moves its tiny picture away (correlations are blind to brightness and contrast anyway)."""
    small = cv2.resize(thumb, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(small.astype(np.float32), (0, 0), 0.7)


@functools.lru_cache(maxsize=4)
def _dct_rows(n: int, k: int) -> np.ndarray:
    """The first k rows of the orthonormal n-point DCT-II matrix: dctn(x, norm="ortho")[:k, :k] = D x D^T."""
    i = np.arange(n)
    rows = np.cos(np.pi * (2 * i[None, :] + 1) * np.arange(k)[:, None] / (2 * n)) * np.sqrt(2.0 / n)
    rows[0] /= np.sqrt(2.0)
    return rows


def phashes(smalls: np.ndarray) -> np.ndarray:
    """64-bit pHashes (uint64) of a stack of 32x32 grays, [..., 32, 32]: the classic 8x8 lowest DCT frequencies
    compared with their median, vectorised over the stack (one call per chunk of pictures)."""
    d = _dct_rows(32, 8)
    coeffs = (d @ smalls @ d.T).reshape(*smalls.shape[:-2], 64)
    bits = coeffs > np.median(coeffs, axis=-1, keepdims=True)
    return np.packbits(bits, axis=-1).view(">u8")[..., 0].astype(np.uint64)


def thumb_phashes(thumbs: np.ndarray) -> np.ndarray:
    """[n] uint64 pHashes of thumbnails [n, DETAIL, DETAIL], the manifest's `phash` column (the search ranks
    tiny pictures instead: tiny_features)."""
    smalls = np.stack([cv2.resize(t, (32, 32), interpolation=cv2.INTER_AREA) for t in thumbs])
    return phashes(smalls.astype(np.float64))


TINY = 8  # side of the tiny pictures the candidate search correlates (64 numbers each)


def tiny_features(thumbs: np.ndarray) -> np.ndarray:
    """[n, 3, TINY*TINY] float32 unit vectors (zero mean) of thumbnails [n, DETAIL, DETAIL]: the whole picture,
    its mirror image and its inner crop, each area-averaged to TINY x TINY. The dot product of two is the
    correlation of the two tiny pictures: the candidate search (search.candidate_pairs) ranks neighbours by it."""
    k = round(THUMB * INNER)
    out = np.empty((len(thumbs), 3, TINY * TINY), dtype=np.float32)
    for i, thumb in enumerate(thumbs):
        view = small_view(thumb)
        for j, v in enumerate((view, view[:, ::-1], view[k:-k, k:-k])):
            out[i, j] = cv2.resize(v, (TINY, TINY), interpolation=cv2.INTER_AREA).ravel()
    out -= out.mean(axis=2, keepdims=True)
    out /= np.linalg.norm(out, axis=2, keepdims=True) + 1e-6
    return out
