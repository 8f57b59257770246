"""How b lines up on a: the affine maps a copy's geometry may have, found by ECC from crop hypotheses.

    start, score = start_map(view_a, view_b)   # identity or a crop hypothesis, and its NCC on 32-px views
    warp = ecc(view_a, view_b, start)          # 2x3 map a's grid -> b's, or None (no plausible copy geometry)
    sx, sy, turn, shear, shift = map_parts(warp, n)

ECC (cv2.findTransformECC, affine) refines a start; a crop scaled back or a turn of a few degrees is within its
reach only from a start near it, so the start is the best of the identity and a few crops people make. What ECC
returns is a copy's geometry only within bounds (zoom, turn, stretch, shear, centre shift): two different
pictures can be "aligned" by a wild map.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from finegrain.preprocess.dedup.normalize import THUMB

CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 15, 1e-3)  # steps: a call's cost is mostly fixed
# The geometric changes a copy may have: a crop of up to ~13 % per edge scaled back, a turn of up to ~8 degrees.
# ECC may "align" two different pictures with a wild map; such maps are no copy.
# A crop off one edge stretches one axis (10 %: 1.11x) and moves the centre (by 5 %).
_MAX_ZOOM, _MAX_TURN, _MAX_SHIFT, _MAX_SHEAR, _MAX_ASPECT = 1.35, np.deg2rad(8.0), 0.1, 0.1, 1.13


def map_parts(warp: np.ndarray, n: int) -> tuple[float, float, float, float, float]:
    """What a 2x3 map (a's n-px grid -> b's) does: scale along x and y, turn (radians), shear (cosine of the angle
    between the mapped axes) and how far it moves the centre (share of the side). In Python floats: ~2 us a call,
    where numpy's calls on the 2x3 array took ~11, and every ECC result and copy_rule asks."""
    (a, b, tx), (c, d, ty) = np.asarray(warp, dtype=np.float64).tolist()
    sx, sy = math.hypot(a, c), math.hypot(b, d)
    turn = math.atan2(c - b, a + d)
    half = n / 2
    shift = max(abs(a * half + b * half + tx - half), abs(c * half + d * half + ty - half)) / n
    return sx, sy, turn, abs(a * b + c * d) / (sx * sy), shift


def ncc(x: np.ndarray, y: np.ndarray) -> float:
    """Normalised cross-correlation of two same-shape arrays (0 when either is flat). Centred, then three dot
    products: ~20 us on 64 px arrays, where cv2.matchTemplate costs ~30 (the sample's planted look-alikes; the
    check asks ncc_and_mirrored)."""
    x = np.asarray(x, np.float32).ravel()
    y = np.asarray(y, np.float32).ravel()
    x, y = x - x.mean(), y - y.mean()
    denominator = float(np.sqrt(float(x @ x) * float(y @ y)))
    return float(x @ y) / denominator if denominator > 0 else 0.0


def ncc_and_mirrored(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """ncc(x, y) and ncc(x, y mirrored left to right), centring each once: the first two questions of every check
    (half the cost of two ncc calls)."""
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.float32)
    xc = (x - x.mean()).ravel()
    yc = y - y.mean()
    flat = yc.ravel()
    denominator = float(np.sqrt(float(xc @ xc) * float(flat @ flat)))
    if denominator <= 0:
        return 0.0, 0.0
    return float(xc @ flat) / denominator, float(xc @ yc[:, ::-1].ravel()) / denominator


def rescaled(warp: np.ndarray, factor: float) -> np.ndarray:
    """The same 2x3 map on grids `factor` times the size (the shift scales, the linear part does not); a copy."""
    out = np.array(warp, dtype=np.float32)
    out[:, 2] *= factor
    return out


def _crop_map(fractions: tuple[float, float, float, float], n: int, inverse: bool) -> np.ndarray:
    """The 2x3 map (a's grid -> b's) when b is a's picture cropped by `fractions` (left, top, right, bottom) and
    scaled back to a's size; `inverse`: when a is the crop of b."""
    left, top, right, bottom = fractions
    sx, sy = 1 / (1 - left - right), 1 / (1 - top - bottom)
    m = np.array([[sx, 0, -left * n * sx], [0, sy, -top * n * sy]], np.float32)
    return cv2.invertAffineTransform(m) if inverse else m


# Crops people make (share cut off each edge): the ECC starts from the best of these, so a zoom of up to 1.25 or a
# stretch along one axis is within its reach even on soft, low-texture pictures where it wanders from the identity.
_CROPS = [(f, f, f, f) for f in (0.04, 0.08)] + [
    tuple(0.06 if k == side else 0.0 for k in range(4)) for side in range(4)
]


def _unit(views: list[np.ndarray]) -> np.ndarray:
    """[k, n*n] float32 rows: each view centred and scaled to unit length (a flat view: zeros)."""
    rows = np.stack(views).reshape(len(views), -1).astype(np.float32)
    rows -= rows.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    return rows / np.where(norms > 0, norms, 1.0)[:, None]


def start_map(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """The best starting map for ECC at THUMB px, the identity or a crop hypothesis, and its NCC on half-size
    views: a crop hypothesis compares the one picture's box, scaled to full size, with the other picture.
    The thirteen NCCs are one product of unit rows (as many ncc calls cost a third of a check)."""
    n = THUMB // 2
    ha, hb = (cv2.resize(x, (n, n), interpolation=cv2.INTER_AREA) for x in (a, b))
    firsts, seconds, hypotheses = [ha], [hb], [None]
    for crop in _CROPS:
        left, top, right, bottom = (round(f * n) for f in crop)
        for inverse, (outer, other) in ((False, (ha, hb)), (True, (hb, ha))):
            box = outer[top : n - bottom, left : n - right]
            firsts.append(cv2.resize(box, (n, n), interpolation=cv2.INTER_LINEAR))
            seconds.append(other)
            hypotheses.append((crop, inverse))
    scores = np.einsum("ij,ij->i", _unit(firsts), _unit(seconds))
    k = int(np.argmax(scores))  # the first best: the identity wins ties
    if k == 0:
        best = np.eye(2, 3, dtype=np.float32)
    else:
        crop, inverse = hypotheses[k]
        best = _crop_map(crop, n, inverse)
    return rescaled(best, 2.0), float(scores[k])  # the half-size map on THUMB px


def ecc(a: np.ndarray, b: np.ndarray, start: np.ndarray) -> np.ndarray | None:
    """Affine map from a's grid to b's (views of a's size, square) by ECC from `start`; None when it fails."""
    n = a.shape[0]
    try:
        _, warp = cv2.findTransformECC(a, b, start, cv2.MOTION_AFFINE, CRITERIA, None, 1)
    except cv2.error:
        return None
    if _plausible(warp, n):
        return warp
    # On soft pictures ECC's spare freedom wanders into a shear the copy does not have; the same map without
    # the shear is a copy's geometry, and the blocks then judge whether it fits.
    fixed = without_shear(warp, n)
    return fixed if _plausible(fixed, n) else None


def without_shear(warp: np.ndarray, n: int) -> np.ndarray:
    """The 2x3 map with the same scales along x and y, turn and centre (of an n-px grid) as `warp`, no shear."""
    sx, sy, turn, _, _ = map_parts(warp, n)
    c, s = np.cos(turn), np.sin(turn)
    m = np.array([[c * sx, -s * sy], [s * sx, c * sy]])
    centre = np.array([n / 2, n / 2])
    return np.hstack([m, (warp[:, :2] @ centre + warp[:, 2] - m @ centre)[:, None]]).astype(np.float32)


def _plausible(warp: np.ndarray, n: int) -> bool:
    if np.linalg.det(warp[:, :2].astype(np.float64)) <= 0:
        return False
    sx, sy, turn, shear, shift = map_parts(warp, n)
    return (1 / _MAX_ZOOM <= min(sx, sy) and max(sx, sy) <= _MAX_ZOOM and abs(turn) <= _MAX_TURN
            and max(sx, sy) / min(sx, sy) <= _MAX_ASPECT and shear <= _MAX_SHEAR and shift <= _MAX_SHIFT)  # fmt: skip
