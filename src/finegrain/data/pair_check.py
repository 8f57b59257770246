"""The strict check that a near-duplicate candidate pair shows the same picture (a copy, not a look-alike).

    coarse = coarse_match(thumb_a, thumb_b, min_similarity=0.9)  # stage one, thumbnails only
    check = confirm_near_duplicate(gray_a, gray_b, thumb_a, thumb_b, max_dct_distance=40, min_similarity=0.9,
                                   max_local_diff=0.15, coarse=coarse)

Stage one aligns the 64-px thumbnails over crop sizes; a pair that correlates poorly stops there (never re-read).
Stage two aligns the working-resolution grays (`working_gray`, at most WORK_SIDE px) for scale and a sub-pixel
offset, then requires a high NCC, a close 256-bit DCT hash AND no 6x6 block that differs: a re-encoded, resized
or slightly cropped copy passes all three; a look-alike (same car and pose, another decal, background or wheel
angle) fails the block check.
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
LOCAL_BLOCK = 6  # block side (working pixels) of the local difference check
WORK_SIDE = 256  # confirmation compares the pair at most this many pixels on the long side
# Stage one rejects a pair whose thumbnail NCC is this far under min_similarity. On the bench's 1,500-image sets
# (192x144 and 600x450) the aligned working NCC of a pair exceeded its thumbnail NCC by at most 0.051, so 0.08
# keeps a 1.6x margin for copies while sparing the decode + alignment of ~1 in 5 candidates (look-alikes).
COARSE_MARGIN = 0.08
_NEAR = 3  # pixels around the best match searched when refining its scale by +-0.75 %


def working_gray(img: Image.Image, native_size: tuple[int, int], scale: float) -> np.ndarray:
    """Grayscale float32 of an image at `scale` x its native size (img may be a reduced JPEG draft)."""
    w, h = native_size
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    # Area-average in float, not PIL's BOX on uint8: rounding each working pixel to 8 bits put the local block
    # difference of 600x450 crop copies at up to 0.22 (over the 0.15 bar); in float they stay under 0.12.
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
    local_diff: float  # worst 6x6-block mean |z(a) - z(b)| after a light blur: small local edits show here
    note: str = ""


@dataclass
class Coarse:
    """Stage one of the pair check, on the thumbnails alone (so a rejected pair is never re-read)."""

    ncc: float  # best NCC of one thumbnail inside the other
    b_inside_a: bool  # which picture is the (possible) crop
    window: tuple[float, float, float, float]  # where the inner one sits in the outer, as fractions
    ok: bool  # worth stage two: ncc >= min_similarity - COARSE_MARGIN

    def rejection(self) -> PairCheck:
        return PairCheck(False, self.ncc, 256, float("inf"), "coarse thumbnails differ")


def coarse_match(thumb_a: np.ndarray, thumb_b: np.ndarray, min_similarity: float) -> Coarse:
    """Align two THUMB x THUMB thumbnails over crop sizes; pairs far below min_similarity stop here."""
    reject_below = min_similarity - COARSE_MARGIN
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
) -> PairCheck:
    """Whether two grayscale images (float32, same scale per source pixel) show the same picture.

    One may be a crop and/or a resize of the other. The thumbnails give a coarse window (`coarse`, when the
    caller already ran coarse_match); the full images are then aligned under three scale hypotheses (pure crop:
    1:1; pure resize: size ratio; the coarse window) refined down to 0.25 % per axis and to a sub-pixel offset,
    and compared block by block. A look-alike (same car and pose, another decal, background or wheel angle)
    correlates well overall but fails the local block check.
    """
    coarse = coarse or coarse_match(thumb_a, thumb_b, min_similarity)
    if not coarse.ok:
        return coarse.rejection()
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
    return _compare(*_subpixel(big, small, *best[3], best[2]), small, best[0], max_dct_distance, min_similarity,
                    max_local_diff)  # fmt: skip


def _compare(
    patch: np.ndarray, frac: tuple[float, float], small: np.ndarray, ncc: float, max_dct_distance: int, min_similarity: float,
    max_local_diff: float,
) -> PairCheck:  # fmt: skip
    """The strict checks on an aligned pair: NCC, 256-bit DCT hash distance, worst local block difference."""
    # The same smoothing on both: a bilinear shift by f blurs with variance f(1 - f), so the template gets it too.
    sx, sy = (float(np.sqrt(1.0 + f * (1.0 - f))) for f in frac)
    p, q = cv2.GaussianBlur(patch, (0, 0), 1.0), cv2.GaussianBlur(small, (0, 0), sigmaX=sx, sigmaY=sy)
    diff = np.abs(_z(p) - _z(q))
    block = LOCAL_BLOCK
    gh, gw = diff.shape[0] // block, diff.shape[1] // block
    local = float(diff[: gh * block, : gw * block].reshape(gh, block, gw, block).mean(axis=(1, 3)).max())
    to32 = [cv2.resize(x, (_COMPARE, _COMPARE), interpolation=cv2.INTER_AREA) for x in (patch, small)]
    dist = int(np.count_nonzero(dct_hash_bits(to32[0], 16) != dct_hash_bits(to32[1], 16)))
    same = ncc >= min_similarity and dist <= max_dct_distance and local <= max_local_diff
    return PairCheck(same, ncc, dist, local)
