"""Aligning two pictures of a candidate pair: thumbnails over crop sizes, working grays over scale and sub-pixel
offset (the general search), and a crop located to the source pixel from textured patches.

    ncc, b_inside_a, window = coarse_window(thumb_a, thumb_b)     # 64-px thumbnails, crop-size grid
    check = search(a, b, b_inside_a, window, 40, 0.9, 0.18)       # working grays: scale + sub-pixel offset
    aligned, corner = native_crop(big_n, small_n, big, small)     # a pure crop, to the native pixel
"""

from __future__ import annotations

import cv2
import numpy as np

from finegrain.preprocess.dedup.pair_compare import SEARCH_BAR, PairCheck, compare, ncc

# Crop sizes (fraction of each side kept) first tried when roughly aligning two thumbnails, then refined.
_GRID = (1.0, 0.92, 0.84)
_NEAR = 3  # pixels around the best match searched at each step of the scale refinement
_PATCH = 96  # side of the crop's patch located in its original at the working scale...
_NATIVE_PATCH = 128  # ...and then to the native pixel, within a working pixel's worth (plus _NATIVE_RADIUS) of it
_NATIVE_RADIUS = 3


def match(
    a: np.ndarray, b: np.ndarray, kx: float, ky: float
) -> tuple[float, tuple[float, float, float, float]]:
    """NCC of b shrunk to (kx, ky) of a's side, at its best place in a; the window as fractions of a."""
    n = a.shape[0]
    tw, th = round(n * kx), round(n * ky)
    result = cv2.matchTemplate(a, cv2.resize(b, (tw, th), interpolation=cv2.INTER_AREA), cv2.TM_CCOEFF_NORMED)
    _, score, _, (x, y) = cv2.minMaxLoc(result)
    return float(score), (x / n, y / n, (x + tw) / n, (y + th) / n)


def coarse_window(
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
        (match(outer, inner, kx, ky)[0], kx, ky, inside)
        for outer, inner, inside in ((half[0], half[1], True), (half[1], half[0], False)) for kx in _GRID
        for ky in _GRID
    )  # fmt: skip
    best = match(*((a, b) if inside else (b, a)), kx, ky) + (kx, ky, inside)
    outer, inner = (a, b) if best[4] else (b, a)
    if best[0] < give_up_below:
        return best[0], best[4], best[1]
    for step in (0.04, 0.02):
        for axis in (0, 1):  # one axis at a time, as in the fine refinement: 4 matches a step, not 8
            kx0, ky0 = best[2], best[3]
            for delta in (-step, step):
                kx, ky = (kx0 + delta, ky0) if axis == 0 else (kx0, ky0 + delta)
                if kx <= 1.0 and ky <= 1.0:
                    cand = match(outer, inner, kx, ky)
                    if cand[0] > best[0]:
                        best = cand + (kx, ky, best[4])
    return best[0], best[4], best[1]


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
    smoothing compare gives the template too.
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


def search(a: np.ndarray, b: np.ndarray, b_inside_a: bool, win: tuple[float, float, float, float],
           max_dct_distance: int, min_similarity: float, max_local_diff: float,
           native: tuple[np.ndarray, np.ndarray] | None = None) -> PairCheck:  # fmt: skip
    """The general alignment on the working grays: scale hypotheses from sizes and the thumbnails' window, each
    searched over the whole picture, refined in scale and to a sub-pixel offset (a crop and a resize at once).
    With native pixels, the window found is then also cut from the native picture and resampled once."""
    max_local_diff *= SEARCH_BAR  # 6-px blocks (SEARCH_BLOCK, compare's default) and their own bar
    # The picture whose content sits inside the other is the template (a crop shows a window of its original).
    big, small = (a, b) if b_inside_a else (b, a)
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
    # scale refinement below (which only nudges the NCC: passing pairs score ~0.99, look-alikes ~0.9).
    check = compare(*_subpixel(big, small, *best[3], best[2]), small, best[0], max_dct_distance, min_similarity,
                     max_local_diff)  # fmt: skip
    if check.same or best[0] < min_similarity - 0.05:
        return check
    # Scale refinement, hill-climbing by 2 %, 1 %, 0.5 % and 0.25 %: the thumbnails' crop grid places a cropped-and-
    # resized copy's scale only to ~2 % (at 2 % off its NCC stays ~0.99 but every edge differs), and below
    # WORK_SIDE's native size each picture's working size is rounded on its own, so even a pure crop's relative
    # scale is 1 +- 0.3 %. One axis at a time (the NCC over (fx, fy) is close to separable); a step repeats while
    # it improves, at most 3 times.
    for step in (0.02, 0.01, 0.005, 0.0025):
        for axis in (0, 1):
            for _ in range(3):
                base, moved = best[3], False
                for factor in (1 - step, 1 + step):
                    f = (base[0] * factor, base[1]) if axis == 0 else (base[0], base[1] * factor)
                    cand = _fit(big, small, *f, near=best[2]) + (f,)
                    if cand[0] > best[0]:
                        best, moved = cand, True
                if not moved:
                    break
    check = compare(*_subpixel(big, small, *best[3], best[2]), small, best[0], max_dct_distance, min_similarity,
                     max_local_diff)  # fmt: skip
    if check.same or best[0] < min_similarity:
        return check
    (x, y), (fx, fy) = best[2], best[3]
    if max(fx, fy) > 1.0:
        # The template shows the content at a higher resolution than `big` (a crop scaled back up): upscaling big
        # to it (bilinear) cannot restore the detail the copy's own resampling kept, so edges differ. Compare at
        # the coarser resolution instead: the template area-reduced onto big's own grid.
        down = _downscaled_template(big, small, (x / fx, y / fy), (fx, fy))
        if down is not None:
            reduced = compare(*down, max_dct_distance, min_similarity, max_local_diff)
            if reduced.same:
                return reduced
    if native is None:
        return check
    # Resampled twice (native -> working -> aligned scale), a copy's sharp edges differ on the two grids; cut
    # from the native picture and resampled once, only the sub-pixel rounding of the window's corners remains.
    big_n = native[0] if b_inside_a else native[1]
    kx, ky = fx * big.shape[1] / big_n.shape[1], fy * big.shape[0] / big_n.shape[0]  # scaled big per native px
    x0, y0 = round(x / kx), round(y / ky)
    x1 = min(big_n.shape[1], round((x + small.shape[1]) / kx))
    y1 = min(big_n.shape[0], round((y + small.shape[0]) / ky))
    if x1 - x0 < small.shape[1] // 2 or y1 - y0 < small.shape[0] // 2:
        return check
    patch = cv2.resize(big_n[y0:y1, x0:x1], (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
    resampled = compare(patch, (0.0, 0.0), small, ncc(patch, small), max_dct_distance, min_similarity,
                         max_local_diff)  # fmt: skip
    return resampled if resampled.same else check


def _downscaled_template(
    big: np.ndarray, small: np.ndarray, corner: tuple[float, float], f: tuple[float, float]
) -> tuple | None:
    """`small` area-reduced by 1/f onto big's grid and aligned there to a sub-pixel offset near `corner` (in big's
    own pixels): compare's leading arguments (patch of big, fractions, reduced template, NCC); None if it fits
    nowhere."""
    size = (round(small.shape[1] / f[0]), round(small.shape[0] / f[1]))
    if min(size) < 16 or size[0] > big.shape[1] or size[1] > big.shape[0]:
        return None
    reduced = cv2.resize(small, size, interpolation=cv2.INTER_AREA)
    score, _, at = _fit(big, reduced, 1.0, 1.0, near=(round(corner[0]), round(corner[1])))
    if score < -0.5:
        return None
    patch, frac = _subpixel(big, reduced, 1.0, 1.0, at)
    return patch, frac, reduced, score


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


def native_crop(
    big_n: np.ndarray, small_n: np.ndarray, big: np.ndarray, small: np.ndarray
) -> tuple[tuple, tuple[int, int]] | None:
    """A pure crop (small_n a window of big_n, 1:1) aligned on whole native pixels: (compare's leading
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
    return (patch, (0.0, 0.0), small, ncc(patch, small)), (x0, y0)
