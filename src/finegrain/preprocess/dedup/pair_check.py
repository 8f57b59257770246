"""The strict check that a near-duplicate candidate pair shows the same picture (a copy, not a look-alike).

    coarse = coarse_match(thumb_a, thumb_b, min_similarity=0.9, sizes=(size_a, size_b))  # thumbnails only
    check = confirm_near_duplicate(gray_a, gray_b, thumb_a, thumb_b, max_dct_distance=40, min_similarity=0.9,
                                   max_local_diff=0.18, coarse=coarse, native=(pixels_a, pixels_b))

Stage one aligns the 64-px thumbnails, under the geometry the native sizes imply (same aspect: a resize; one
inside the other: a pure crop) or else over a grid of crop sizes; a pair that correlates poorly stops there and
is never re-read. Stage two aligns the pictures themselves: with the decoded pixels (`native`) under that exact
geometry, a crop placed to the source pixel (_exact), else by a search over scale and a sub-pixel offset on the
working-resolution grays (`working_gray`, at most WORK_SIDE px; pair_align.search). Then pair_compare.compare
requires a high NCC, a close 256-bit DCT hash AND no small block that differs: a re-encoded, resized or slightly
cropped copy passes all three; a look-alike (same car and pose, another decal, background or wheel angle) fails
the block check.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from finegrain.preprocess.dedup.pair_align import coarse_window, match, native_crop, search
from finegrain.preprocess.dedup.pair_compare import (
    EXACT_BLOCK,
    SEARCH_BAR,
    SEARCH_BLOCK,
    PairCheck,
    compare,
    ncc,
)

__all__ = ["EXACT_BLOCK", "SEARCH_BAR", "SEARCH_BLOCK", "WORK_SIDE", "Coarse", "PairCheck", "coarse_match",
           "confirm_near_duplicate", "working_gray"]  # fmt: skip

WORK_SIDE = 256  # confirmation compares the pair at most this many pixels on the long side
# Stage one rejects a pair whose thumbnail NCC is this far under min_similarity. On the bench's 1,500-image sets
# (192x144 and 600x450) the aligned working NCC of a pair exceeded its thumbnail NCC by at most 0.051, so 0.08
# keeps a 1.6x margin for copies while sparing the decode + alignment of ~1 in 5 candidates (look-alikes).
COARSE_MARGIN = 0.08
_SAME_ASPECT = 0.01  # relative difference of aspect ratios under which two pictures may be resizes of each other
# The smallest share of a side a pure crop is taken to keep (the thumbnails' crop grid reaches ~0.78): below it,
# a smaller picture is far likelier a resize, and locating it 1:1 in the larger one would be wasted work.
_MIN_CROP = 0.75
_AGREE = 0.02  # how far (fraction of the picture) the thumbnails' window may sit from the exact geometry's


def working_gray(img: Image.Image | np.ndarray, native_size: tuple[int, int], scale: float) -> np.ndarray:
    """Grayscale float32 of an image at `scale` x its native size (img may be a reduced JPEG draft, or already
    a gray array)."""
    w, h = native_size
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    # Area-average in float, not PIL's BOX on uint8: rounding each working pixel to 8 bits put the local block
    # difference of 600x450 crop copies at up to 0.22 (over the 0.15 bar); in float they stay under 0.12.
    if isinstance(img, np.ndarray):
        gray = img.astype(np.float32, copy=False)
    else:
        gray = np.asarray(img.convert("L"), dtype=np.float32)
    return gray if gray.shape[::-1] == size else cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


@dataclass
class Coarse:
    """Stage one of the pair check, on the thumbnails alone (so a rejected pair is never re-read)."""

    ncc: float  # best NCC of one thumbnail inside the other
    b_inside_a: bool  # which picture is the (possible) crop
    window: tuple[float, float, float, float]  # where the inner one sits in the outer, as fractions
    ok: bool  # worth stage two: ncc >= min_similarity - COARSE_MARGIN
    from_sizes: bool = False  # found under the geometry the native sizes imply; the crop-size grid never ran

    def rejection(self) -> PairCheck:
        return PairCheck(False, self.ncc, 256, float("inf"), "coarse thumbnails differ")


def _geometry(
    size_a: tuple[int, int], size_b: tuple[int, int]
) -> list[tuple[bool, tuple[float, float]]]:
    """What two native sizes allow without a search: (b_inside_a, (kx, ky) = inner's share of the outer's sides).

    Equal aspect ratios: a resize or re-encode, full frame on full frame (1, 1). One fitting inside the other:
    a pure crop, of the inner's size in native pixels. Both can hold (a crop kept in proportion).
    """
    (aw, ah), (bw, bh) = size_a, size_b
    b_inside_a = aw * ah >= bw * bh
    (ow, oh), (iw, ih) = (size_a, size_b) if b_inside_a else (size_b, size_a)
    found = []
    if abs((ow / oh) / (iw / ih) - 1) < _SAME_ASPECT:
        found.append((b_inside_a, (1.0, 1.0)))
    if iw <= ow and ih <= oh and (iw, ih) != (ow, oh) and min(iw / ow, ih / oh) >= _MIN_CROP:
        found.append((b_inside_a, (iw / ow, ih / oh)))
    return found


def coarse_match(
    thumb_a: np.ndarray,
    thumb_b: np.ndarray,
    min_similarity: float,
    sizes: tuple[tuple[int, int], tuple[int, int]] | None = None,
) -> Coarse:
    """Align two THUMB x THUMB thumbnails; pairs far below min_similarity stop here.

    With the native sizes, the geometry they imply (resize or pure crop) is tried first: one or two matches
    instead of the crop-size grid's ~25, and enough for most copies (on the bench sets copies score >= 0.92
    under it, other candidate pairs <= 0.86). Otherwise, or when that does not reach min_similarity, the grid.
    """
    reject_below = min_similarity - COARSE_MARGIN
    if sizes is not None:
        a, b = thumb_a.astype(np.float32), thumb_b.astype(np.float32)
        tried = []
        for b_inside_a, (kx, ky) in _geometry(*sizes):
            outer, inner = (a, b) if b_inside_a else (b, a)
            if (kx, ky) == (1.0, 1.0):  # both thumbnails are the whole frame squeezed to THUMB x THUMB
                tried.append((ncc(outer, inner), b_inside_a, (0.0, 0.0, 1.0, 1.0)))
            else:
                score, window = match(outer, inner, kx, ky)
                tried.append((score, b_inside_a, window))
        if tried and max(tried)[0] >= min_similarity:
            score, b_inside_a, window = max(tried)
            return Coarse(score, b_inside_a, window, True, from_sizes=True)
    score, b_inside_a, window = coarse_window(thumb_a, thumb_b, give_up_below=reject_below - 0.1)
    return Coarse(score, b_inside_a, window, score >= reject_below)


def confirm_near_duplicate(
    a: np.ndarray,
    b: np.ndarray,
    thumb_a: np.ndarray,
    thumb_b: np.ndarray,
    *,
    max_dct_distance: int,
    min_similarity: float,
    max_local_diff: float,
    coarse: Coarse | None = None,
    native: tuple[np.ndarray, np.ndarray] | None = None,
) -> PairCheck:
    """Whether two grayscale images (float32, same scale per source pixel) show the same picture.

    One may be a crop and/or a resize of the other. native: the two pictures as decoded, on one common scale
    (both at native size, or both JPEG-drafted by the same factor), a and b being area-reduced from them. With
    them, the geometry their sizes imply is tried first (_exact: a crop placed to the source pixel, each picture
    resampled once) and decides, unless the thumbnails' best window says another geometry (then, as without
    native pixels, pair_align.search: three scale hypotheses hill-climbed from 2 % down to 0.25 % per axis, and a
    sub-pixel offset). A look-alike correlates well overall but fails the local block check.
    """
    coarse = coarse or coarse_match(thumb_a, thumb_b, min_similarity)
    if not coarse.ok:
        return coarse.rejection()
    limits = (max_dct_distance, min_similarity, max_local_diff)
    if native is not None:
        exact = _exact(a, b, *native)
        if exact is not None:
            aligned, geometry = exact
            check = compare(*aligned, *limits, block=EXACT_BLOCK)
            if check.same:
                return check
            # Different under the geometry the sizes imply. Final, unless the thumbnails' best window over all crop
            # sizes lies elsewhere (a crop resized back to its original's size, say): then the general search,
            # which starts from that window, decides. Where they agree it would only repeat this alignment.
            if coarse.from_sizes:
                coarse = coarse_match(thumb_a, thumb_b, min_similarity)
            if max(abs(u - v) for u, v in zip(geometry, coarse.window)) <= _AGREE:
                return check
    return search(a, b, coarse.b_inside_a, coarse.window, *limits, native=native)


def _exact(
    a: np.ndarray, b: np.ndarray, a_n: np.ndarray, b_n: np.ndarray
) -> tuple[tuple, tuple[float, float, float, float]] | None:
    """Align a pair by the geometry its native sizes imply (_geometry), resampling each picture once from its native
    pixels onto the smaller one's working grid. None when the sizes imply no geometry. Returns (compare's
    leading arguments, the inner picture's window in the outer one, as fractions).

    Two resamplings of the same content on different grids (the general search's working-scale alignment) add
    interpolation noise a copy then has to stay under the local bar with: on the 600x450 bench set, copies
    reached 0.25 there (crops), 0.03 here.
    """
    found = []
    for b_inside_a, (kx, ky) in _geometry(a_n.shape[::-1], b_n.shape[::-1]):
        (outer, outer_n), (inner, inner_n) = ((a, a_n), (b, b_n)) if b_inside_a else ((b, b_n), (a, a_n))
        if (kx, ky) == (1.0, 1.0):  # resized or re-encoded: full frame on full frame
            patch = outer if outer.shape == inner.shape and outer_n.shape == inner_n.shape else cv2.resize(
                outer_n, (inner.shape[1], inner.shape[0]), interpolation=cv2.INTER_AREA)  # fmt: skip
            found.append(((patch, (0.0, 0.0), inner, ncc(patch, inner)), (0.0, 0.0, 1.0, 1.0)))
        else:
            crop = native_crop(outer_n, inner_n, outer, inner)
            if crop is not None:
                (ox, oy), (oh, ow), (ih, iw) = crop[1], outer_n.shape, inner_n.shape
                found.append((crop[0], (ox / ow, oy / oh, (ox + iw) / ow, (oy + ih) / oh)))
    return max(found, key=lambda f: f[0][3]) if found else None
