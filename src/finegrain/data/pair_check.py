"""The strict check that a near-duplicate candidate pair shows the same picture (a copy, not a look-alike).

    coarse = coarse_match(thumb_a, thumb_b, min_similarity=0.9, sizes=(size_a, size_b))  # thumbnails only
    check = confirm_near_duplicate(gray_a, gray_b, thumb_a, thumb_b, max_dct_distance=40, min_similarity=0.9,
                                   max_local_diff=0.18, coarse=coarse, native=(pixels_a, pixels_b))

Stage one aligns the 64-px thumbnails, under the geometry the native sizes imply (same aspect: a resize; one
inside the other: a pure crop) or else over a grid of crop sizes; a pair that correlates poorly stops there and
is never re-read. Stage two aligns the pictures themselves: with the decoded pixels (`native`) under that exact
geometry, a crop placed to the source pixel (_exact), else by a search over scale and a sub-pixel offset on the
working-resolution grays (`working_gray`, at most WORK_SIDE px; _search). Then it requires a high NCC, a close
256-bit DCT hash AND no small block that differs: a re-encoded, resized or slightly cropped copy passes all three;
a look-alike (same car and pose, another decal, background or wheel angle) fails the block check.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from finegrain.data.dedup import dct_hash_bits

_COMPARE = 32  # the 256-bit DCT hash of an aligned pair is taken at this size
# Crop sizes (fraction of each side kept) first tried when roughly aligning two thumbnails, then refined.
_GRID = (1.0, 0.92, 0.84)
# The local difference check: worst block mean of |z(a) - z(b)|, blocks of EXACT_BLOCK working pixels when the
# pair was aligned on whole source pixels and resampled once (_exact), SEARCH_BLOCK with SEARCH_BAR x the bar after
# the general search's interpolated alignment. Measured on the bench sets (copies' max vs look-alikes' min): exact,
# 3-px blocks: 0.117 vs 0.30 at 192x144, 0.033 vs 0.41 at 600x450 (6-px blocks: 0.077 vs 0.145, the look-alike a
# 3-px decal); searched, 6-px blocks: crop-then-resize copies up to 0.135 (3-px: 0.45), against a bar of 0.15.
EXACT_BLOCK = 3
SEARCH_BLOCK = 6
SEARCH_BAR = 0.15 / 0.18
WORK_SIDE = 256  # confirmation compares the pair at most this many pixels on the long side
# Stage one rejects a pair whose thumbnail NCC is this far under min_similarity. On the bench's 1,500-image sets
# (192x144 and 600x450) the aligned working NCC of a pair exceeded its thumbnail NCC by at most 0.051, so 0.08
# keeps a 1.6x margin for copies while sparing the decode + alignment of ~1 in 5 candidates (look-alikes).
COARSE_MARGIN = 0.08
_NEAR = 3  # pixels around the best match searched when refining its scale by +-0.75 %


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


def _match(
    a: np.ndarray, b: np.ndarray, kx: float, ky: float
) -> tuple[float, tuple[float, float, float, float]]:
    """NCC of b shrunk to (kx, ky) of a's side, at its best place in a; the window as fractions of a."""
    n = a.shape[0]
    tw, th = round(n * kx), round(n * ky)
    result = cv2.matchTemplate(a, cv2.resize(b, (tw, th), interpolation=cv2.INTER_AREA), cv2.TM_CCOEFF_NORMED)
    _, score, _, (x, y) = cv2.minMaxLoc(result)
    return float(score), (x / n, y / n, (x + tw) / n, (y + th) / n)


def _coarse_window(
    thumb_a: np.ndarray, thumb_b: np.ndarray, give_up_below: float = -1.0
) -> tuple[float, bool, tuple[float, float, float, float]]:
    """Best NCC of one thumbnail inside the other over crop sizes: (ncc, b_inside_a, window in the outer one).

    Coarse-to-fine: a 3 x 3 grid of crop sizes in both directions, on half-size thumbnails, picks the direction
    (which picture is the crop), then two hill-climbing rounds (steps 0.04, 0.02, one axis at a time) refine it
    at full size: the 0.02 resolution of a full 0.04 grid plus refinement in both directions (66 matches) for
    about a quarter of the cost. When the grid's best is under `give_up_below`, refining cannot rescue the pair
    (it moves the NCC by hundredths): returned as is.
    """
    a, b = thumb_a.astype(np.float32), thumb_b.astype(np.float32)
    # The grid runs on half-size thumbnails (4x fewer pixels per match); the winner is re-scored at full size.
    half = [cv2.resize(x, (x.shape[1] // 2, x.shape[0] // 2), interpolation=cv2.INTER_AREA) for x in (a, b)]
    _, kx, ky, inside = max(
        (_match(outer, inner, kx, ky)[0], kx, ky, inside)
        for outer, inner, inside in ((half[0], half[1], True), (half[1], half[0], False)) for kx in _GRID
        for ky in _GRID
    )  # fmt: skip
    best = _match(*((a, b) if inside else (b, a)), kx, ky) + (kx, ky, inside)
    outer, inner = (a, b) if best[4] else (b, a)
    if best[0] < give_up_below:
        return best[0], best[4], best[1]
    for step in (0.04, 0.02):
        for axis in (0, 1):  # one axis at a time, as in the fine refinement: 4 matches a step, not 8
            kx0, ky0 = best[2], best[3]
            for delta in (-step, step):
                kx, ky = (kx0 + delta, ky0) if axis == 0 else (kx0, ky0 + delta)
                if kx <= 1.0 and ky <= 1.0:
                    cand = _match(outer, inner, kx, ky)
                    if cand[0] > best[0]:
                        best = cand + (kx, ky, best[4])
    return best[0], best[4], best[1]


def _z(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    return x / (x.std() + 1e-6)


def _scaled(big: np.ndarray, fx: float, fy: float, shape: tuple[int, int]) -> np.ndarray | None:
    """`big` resized by (fx, fy), padded by up to 2 rounding pixels to hold `shape`; None when it cannot."""
    h, w = big.shape
    size = (max(1, round(w * fx)), max(1, round(h * fy)))
    scaled = cv2.resize(big, size, interpolation=cv2.INTER_AREA if fx * fy < 1 else cv2.INTER_LINEAR)
    pad_y, pad_x = max(0, shape[0] - scaled.shape[0]), max(0, shape[1] - scaled.shape[1])
    if pad_y > 2 or pad_x > 2:
        return None
    if pad_y or pad_x:
        scaled = cv2.copyMakeBorder(scaled, 0, pad_y, 0, pad_x, cv2.BORDER_REPLICATE)
    return scaled


def _fit(
    big: np.ndarray, small: np.ndarray, fx: float, fy: float, near: tuple[int, int] | None = None
) -> tuple[float, np.ndarray | None, tuple[int, int]]:
    """Scale `big` by (fx, fy) and find `small` in it: (ncc, the matching patch of big, its top-left corner).

    near: only search within _NEAR pixels of this corner (a refinement step moves the match by a pixel or two,
    so searching the whole picture again would only cost time).
    """
    scaled = _scaled(big, fx, fy, small.shape)
    if scaled is None:
        return -1.0, None, (0, 0)  # more than rounding: this scale cannot contain the copy
    th, tw = small.shape
    x0 = y0 = 0
    region = scaled
    if near is not None:
        x0 = min(max(0, near[0] - _NEAR), scaled.shape[1] - tw)
        y0 = min(max(0, near[1] - _NEAR), scaled.shape[0] - th)
        region = scaled[
            y0 : min(scaled.shape[0], y0 + th + 2 * _NEAR), x0 : min(scaled.shape[1], x0 + tw + 2 * _NEAR)
        ]
    result = cv2.matchTemplate(region, small, cv2.TM_CCOEFF_NORMED)
    _, score, _, (x, y) = cv2.minMaxLoc(result)
    x, y = x + x0, y + y0
    return float(score), scaled[y : y + th, x : x + tw], (x, y)


def _subpixel(big: np.ndarray, small: np.ndarray, fx: float, fy: float, at: tuple[int, int]) -> tuple:
    """The patch of `big` (scaled by fx, fy) matching `small`, moved to the sub-pixel peak of the NCC around `at`.

    When the working scale is below 1 a crop's offset is a fraction of a working pixel; left at the integer
    peak, every sharp edge then shows up in the local block check (measured: copies of 600x450 photos cropped
    3-6 % failed it at ~0.2-0.6). Returns (patch, (frac_x, frac_y)): the bilinear shift's fractions, whose
    smoothing _compare gives the template too.
    """
    scaled = _scaled(big, fx, fy, small.shape)
    th, tw = small.shape
    x, y = at
    if x < 1 or y < 1 or x + tw + 1 > scaled.shape[1] or y + th + 1 > scaled.shape[0]:
        return scaled[y : y + th, x : x + tw], (0.0, 0.0)  # peak on the border: no neighbours to fit
    r = cv2.matchTemplate(scaled[y - 1 : y + th + 1, x - 1 : x + tw + 1], small, cv2.TM_CCOEFF_NORMED)

    def peak(lo: float, mid: float, hi: float) -> float:
        curve = lo - 2 * mid + hi
        return 0.0 if curve >= 0 else float(np.clip((lo - hi) / (2 * curve), -0.5, 0.5))

    dx, dy = peak(r[1, 0], r[1, 1], r[1, 2]), peak(r[0, 1], r[1, 1], r[2, 1])
    centre = (x + dx + (tw - 1) / 2, y + dy + (th - 1) / 2)
    return cv2.getRectSubPix(scaled, (tw, th), centre), (abs(dx), abs(dy))


@dataclass
class PairCheck:
    same: bool
    ncc: float  # after alignment, at working resolution
    dct_distance: int  # 256-bit DCT hash distance of the aligned pair
    local_diff: float  # worst block mean |z(a) - z(b)| after a light blur (EXACT_/SEARCH_BLOCK): local edits
    note: str = ""


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
                tried.append((_ncc(outer, inner), b_inside_a, (0.0, 0.0, 1.0, 1.0)))
            else:
                score, window = _match(outer, inner, kx, ky)
                tried.append((score, b_inside_a, window))
        if tried and max(tried)[0] >= min_similarity:
            ncc, b_inside_a, window = max(tried)
            return Coarse(ncc, b_inside_a, window, True, from_sizes=True)
    ncc, b_inside_a, window = _coarse_window(thumb_a, thumb_b, give_up_below=reject_below - 0.1)
    return Coarse(ncc, b_inside_a, window, ncc >= reject_below)


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
    native pixels, _search: three scale hypotheses refined to 0.25 % per axis and a sub-pixel offset). A
    look-alike correlates well overall but fails the local block check.
    """
    coarse = coarse or coarse_match(thumb_a, thumb_b, min_similarity)
    if not coarse.ok:
        return coarse.rejection()
    limits = (max_dct_distance, min_similarity, max_local_diff)
    if native is not None:
        exact = _exact(a, b, *native)
        if exact is not None:
            aligned, geometry = exact
            check = _compare(*aligned, *limits, block=EXACT_BLOCK)
            if check.same:
                return check
            # Different under the geometry the sizes imply. Final, unless the thumbnails' best window over all crop
            # sizes lies elsewhere (a crop resized back to its original's size, say): then the general search,
            # which starts from that window, decides. Where they agree it would only repeat this alignment.
            if coarse.from_sizes:
                coarse = coarse_match(thumb_a, thumb_b, min_similarity)
            if max(abs(u - v) for u, v in zip(geometry, coarse.window)) <= _AGREE:
                return check
    return _search(a, b, coarse, *limits, native=native)


_SAME_ASPECT = 0.01  # relative difference of aspect ratios under which two pictures may be resizes of each other
# The smallest share of a side a pure crop is taken to keep (the thumbnails' crop grid reaches ~0.78): below it,
# a smaller picture is far likelier a resize, and locating it 1:1 in the larger one would be wasted work.
_MIN_CROP = 0.75
_AGREE = 0.02  # how far (fraction of the picture) the thumbnails' window may sit from the exact geometry's


def _exact(
    a: np.ndarray, b: np.ndarray, a_n: np.ndarray, b_n: np.ndarray
) -> tuple[tuple, tuple[float, float, float, float]] | None:
    """Align a pair by the geometry its native sizes imply (_geometry), resampling each picture once from its native
    pixels onto the smaller one's working grid. None when the sizes imply no geometry. Returns (_compare's
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
            found.append(((patch, (0.0, 0.0), inner, _ncc(patch, inner)), (0.0, 0.0, 1.0, 1.0)))
        else:
            crop = _native_crop(outer_n, inner_n, outer, inner)
            if crop is not None:
                (ox, oy), (oh, ow), (ih, iw) = crop[1], outer_n.shape, inner_n.shape
                found.append((crop[0], (ox / ow, oy / oh, (ox + iw) / ow, (oy + ih) / oh)))
    return max(found, key=lambda f: f[0][3]) if found else None


def _ncc(x: np.ndarray, y: np.ndarray) -> float:
    """NCC of two same-shape arrays (numpy: cv2.matchTemplate takes its FFT path at this size, 7x slower)."""
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (np.sqrt((x * x).sum() * (y * y).sum()) + 1e-12))


def _search(a: np.ndarray, b: np.ndarray, coarse: Coarse, max_dct_distance: int, min_similarity: float,
            max_local_diff: float, native: tuple[np.ndarray, np.ndarray] | None = None) -> PairCheck:  # fmt: skip
    """The general alignment on the working grays: scale hypotheses from sizes and the thumbnails' window, each
    searched over the whole picture, refined in scale and to a sub-pixel offset (a crop and a resize at once).
    With native pixels, the window found is then also cut from the native picture and resampled once."""
    max_local_diff *= SEARCH_BAR  # 6-px blocks (SEARCH_BLOCK, _compare's default) and their own bar
    # The picture whose content sits inside the other is the template (a crop shows a window of its original).
    big, small = (a, b) if coarse.b_inside_a else (b, a)
    win = coarse.window
    (bh, bw), (sh, sw) = big.shape, small.shape
    hypotheses = {
        (1.0, 1.0),
        (sw / bw, sh / bh),
        (sw / ((win[2] - win[0]) * bw), sh / ((win[3] - win[1]) * bh)),
    }
    best = max((_fit(big, small, fx, fy) + ((fx, fy),) for fx, fy in sorted(hypotheses)), key=lambda r: r[0])
    if best[1] is None:
        return PairCheck(False, best[0], 256, float("inf"), "no alignment found")
    # Cascade: a pair that already passes every check, or whose NCC is far below the bar, is decided without the
    # +-0.75 % scale refinement (which only nudges the NCC: passing pairs score ~0.99, look-alikes ~0.9).
    check = _compare(*_subpixel(big, small, *best[3], best[2]), small, best[0], max_dct_distance, min_similarity,
                     max_local_diff)  # fmt: skip
    if check.same or best[0] < min_similarity - 0.05:
        return check
    # Scale refinement, +-0.75 % then +-0.25 %: below WORK_SIDE's native size each picture's working size is
    # rounded on its own, so even a pure crop's true relative scale is 1 +- 0.3 %, a pixel across the picture.
    # One axis at a time (the NCC over (fx, fy) is close to separable): 4 fits a step instead of 8 neighbours.
    for step in (0.0075, 0.0025):
        for axis in (0, 1):
            base = best[3]
            for factor in (1 - step, 1 + step):
                f = (base[0] * factor, base[1]) if axis == 0 else (base[0], base[1] * factor)
                cand = _fit(big, small, *f, near=best[2]) + (f,)
                if cand[0] > best[0]:
                    best = cand
    check = _compare(*_subpixel(big, small, *best[3], best[2]), small, best[0], max_dct_distance, min_similarity,
                     max_local_diff)  # fmt: skip
    if check.same or native is None or best[0] < min_similarity:
        return check
    # Resampled twice (native -> working -> aligned scale), a copy's sharp edges differ on the two grids; cut
    # from the native picture and resampled once, only the sub-pixel rounding of the window's corners remains.
    big_n = native[0] if coarse.b_inside_a else native[1]
    (x, y), (fx, fy) = best[2], best[3]
    kx, ky = fx * big.shape[1] / big_n.shape[1], fy * big.shape[0] / big_n.shape[0]  # scaled big per native px
    x0, y0 = round(x / kx), round(y / ky)
    x1 = min(big_n.shape[1], round((x + small.shape[1]) / kx))
    y1 = min(big_n.shape[0], round((y + small.shape[0]) / ky))
    if x1 - x0 < small.shape[1] // 2 or y1 - y0 < small.shape[0] // 2:
        return check
    patch = cv2.resize(big_n[y0:y1, x0:x1], (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
    resampled = _compare(patch, (0.0, 0.0), small, _ncc(patch, small), max_dct_distance, min_similarity,
                         max_local_diff)  # fmt: skip
    return resampled if resampled.same else check


_PATCH = 96  # side of the crop's patch located in its original at the working scale...
_NATIVE_PATCH = 128  # ...and then to the native pixel, within a working pixel's worth (plus _NATIVE_RADIUS) of it
_NATIVE_RADIUS = 3


def _textured_patch(img: np.ndarray, side: int) -> tuple[int, int]:
    """Top-left corner of the side x side patch, among the centre and the four quadrants' centres, with the most
    variance: a flat patch (sky, a white backdrop) would match anywhere."""
    h, w = img.shape
    corners = {(max(0, min(h - side, round(h * fy - side / 2))), max(0, min(w - side, round(w * fx - side / 2))))
               for fy, fx in ((0.5, 0.5), (0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75))}  # fmt: skip
    return max(sorted(corners), key=lambda c: float(img[c[0] : c[0] + side, c[1] : c[1] + side].var()))


def _locate(
    outer: np.ndarray, inner: np.ndarray, side: int, around: tuple[int, int, int] | None
) -> tuple[int, int] | None:
    """Where inner's top-left corner sits in outer (same scale, inner no larger), from one textured patch of it.

    around: search only within a few pixels of this corner (radius _NATIVE_RADIUS plus a working pixel's worth,
    passed as around = (x, y, radius)); otherwise every position where inner fits.
    """
    (oh, ow), (ih, iw) = outer.shape, inner.shape
    side = min(side, ih, iw)
    py, px = _textured_patch(inner, side)
    if around is None:
        x0, x1, y0, y1 = 0, ow - iw, 0, oh - ih
    else:
        x, y, r = around
        x0, x1, y0, y1 = max(0, x - r), min(ow - iw, x + r), max(0, y - r), min(oh - ih, y + r)
    if x1 < x0 or y1 < y0:
        return None
    region = outer[y0 + py : y1 + py + side, x0 + px : x1 + px + side]
    result = cv2.matchTemplate(region, inner[py : py + side, px : px + side], cv2.TM_CCOEFF_NORMED)
    _, _, _, (dx, dy) = cv2.minMaxLoc(result)
    return x0 + dx, y0 + dy


def _native_crop(
    big_n: np.ndarray, small_n: np.ndarray, big: np.ndarray, small: np.ndarray
) -> tuple[tuple, tuple[int, int]] | None:
    """A pure crop (small_n a window of big_n, 1:1) aligned on whole native pixels: (_compare's leading
    arguments, the window's native top-left corner); None when the crop does not fit.

    The offset is found on the working grays first, then to the native pixel around it, each from one textured
    patch (a whole-picture search cost 1.3 ms at 256 px and 2 ms at native; a patch, 0.2 ms each). The crop's
    window of the original and the crop itself are then the same array up to JPEG noise, and reducing both with
    the same resize puts them on the same working grid: no sub-pixel interpolation, which left 3 of 473 crop
    copies of 600x450 photos over the local bar.
    """
    (bh, bw), (sh, sw) = big_n.shape, small_n.shape
    # Working sizes are rounded per picture: a crop a pixel short of its original may come out a pixel longer.
    at = _locate(big, small[: big.shape[0], : big.shape[1]], _PATCH, None)
    if at is None:
        return None
    sx, sy = big.shape[1] / bw, big.shape[0] / bh  # working pixels per native pixel
    if (sx, sy) != (1.0, 1.0):
        radius = _NATIVE_RADIUS + int(np.ceil(1 / min(sx, sy)))
        at = _locate(big_n, small_n, _NATIVE_PATCH, (round(at[0] / sx), round(at[1] / sy), radius))
        if at is None:
            return None
    x0, y0 = at
    window = big_n[y0 : y0 + sh, x0 : x0 + sw]
    # `small` is small_n area-resized to its working size: the window, resized the same way, lands on its grid.
    patch = window if window.shape == small.shape else cv2.resize(
        window, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)  # fmt: skip
    return (patch, (0.0, 0.0), small, _ncc(patch, small)), (x0, y0)


def _compare(
    patch: np.ndarray, frac: tuple[float, float], small: np.ndarray, ncc: float, max_dct_distance: int, min_similarity: float,
    max_local_diff: float, block: int = SEARCH_BLOCK,
) -> PairCheck:  # fmt: skip
    """The strict checks on an aligned pair: NCC, 256-bit DCT hash distance, worst local block difference."""
    # The same smoothing on both: a bilinear shift by f blurs with variance f(1 - f), so the template gets it too.
    sx, sy = (float(np.sqrt(1.0 + f * (1.0 - f))) for f in frac)
    p, q = cv2.GaussianBlur(patch, (0, 0), 1.0), cv2.GaussianBlur(small, (0, 0), sigmaX=sx, sigmaY=sy)
    diff = np.abs(_z(p) - _z(q))
    gh, gw = diff.shape[0] // block, diff.shape[1] // block
    local = float(diff[: gh * block, : gw * block].reshape(gh, block, gw, block).mean(axis=(1, 3)).max())
    to32 = [cv2.resize(x, (_COMPARE, _COMPARE), interpolation=cv2.INTER_AREA) for x in (patch, small)]
    dist = int(np.count_nonzero(dct_hash_bits(to32[0], 16) != dct_hash_bits(to32[1], 16)))
    same = ncc >= min_similarity and dist <= max_dct_distance and local <= max_local_diff
    return PairCheck(same, ncc, dist, local)
