"""Whether two pictures' thumbnails show the same picture, and how one was made from the other.

    m = match_thumbs(thumb_a, thumb_b)   # Match(verdict, flipped, affine, similarity, changed)

The thumbnails (normalize.thumbnail: DETAIL px, borders trimmed, orientation applied) no longer show a letterbox
or an EXIF turn. What is left: a mirror image (taken when it correlates better), a geometric change (a crop
scaled back, a small rotation, a resize to another shape) found as an affine map by ECC (cv2.findTransformECC on
the small equalised views, only when the pair does not already agree as it is), and a brightness, contrast or
gamma change, undone by mapping b's grey levels onto a's distribution (histogram matching over the overlap).

Then the verdict, block by block (8x8 px blocks of the DETAIL thumbnails): a block differs when its residual is
over both an absolute floor and a share of the block's own contrast. Copies differ in almost no block ("same");
a watermark, logo or other local edit differs in one compact blob and nowhere else ("edit"); different pictures
of one scene (another pose, another part of a landscape) differ in blocks all over the frame ("different").
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from finegrain.preprocess.dedup.normalize import DETAIL, THUMB, small_view

_BLOCK = 8  # px of the DETAIL thumbnail per verdict block
_SIGMA = 1.0  # px of blur both get before the block comparison (resampling and JPEG noise is finer)
_ABS_TOL = 8.0  # grey levels of residual a block always tolerates (JPEG q30 and resampling stay under it)
_FLAT = 4.0  # grey levels of standard deviation under which a block has no texture to compare
_MIN_LOCAL = 0.5  # NCC two textured blocks of a copy keep (different texture: near 0)
_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
# The geometric changes a copy may have: a crop of up to ~12 % per edge scaled back, a turn of up to ~8 degrees.
# ECC may "align" two different pictures with a wild map; such maps are no copy.
_MAX_ZOOM, _MAX_TURN, _MAX_SHIFT, _MAX_SHEAR = 1.45, np.deg2rad(8.0), 0.25, 0.1


@dataclass
class Match:
    verdict: str  # "same", "edit" (one local blob differs: a watermark, logo, decal) or "different"
    flipped: bool  # b was mirrored to match a
    affine: np.ndarray  # 2x3 map from a's DETAIL grid to b's (identity: no geometric change)
    similarity: float  # NCC of the two where they overlap, after alignment and grey-level matching
    changed: float  # share of the overlap's blocks that differ
    tone: float = 0.0  # most grey levels the level mapping moved a level of b (brightness, contrast, gamma)

    @property
    def same(self) -> bool:
        return self.verdict != "different"

    def geometry(self) -> dict[str, float]:
        """zoom (>1: b shows a's picture cropped), turn (degrees), shift (share of the side), aspect change."""
        m = self.affine[:, :2].astype(np.float64)
        sx, sy = np.linalg.norm(m[:, 0]), np.linalg.norm(m[:, 1])
        centre = m @ np.array([DETAIL / 2, DETAIL / 2]) + self.affine[:, 2] - DETAIL / 2
        return {"zoom": float(1 / np.sqrt(sx * sy)), "turn": float(np.degrees(np.arctan2(m[1, 0] - m[0, 1],
                m[0, 0] + m[1, 1]))), "shift": float(np.abs(centre).max() / DETAIL), "aspect": float(sx / sy)}  # fmt: skip


def ncc(x: np.ndarray, y: np.ndarray) -> float:
    """Normalised cross-correlation of two same-shape arrays."""
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (np.sqrt((x * x).sum() * (y * y).sum()) + 1e-9))


def _ecc(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Affine map from a's grid to b's (THUMB px views) by ECC, at half size then full; None when it fails."""
    warp = np.eye(2, 3, dtype=np.float32)
    half = [cv2.resize(x, (THUMB // 2, THUMB // 2), interpolation=cv2.INTER_AREA) for x in (a, b)]
    try:
        _, warp = cv2.findTransformECC(half[0], half[1], warp, cv2.MOTION_AFFINE, _CRITERIA, None, 1)
        warp[:, 2] *= 2.0
        _, warp = cv2.findTransformECC(a, b, warp, cv2.MOTION_AFFINE, _CRITERIA, None, 1)
    except cv2.error:
        return None
    return warp if _plausible(warp) else None


def _plausible(warp: np.ndarray) -> bool:
    m = warp[:, :2].astype(np.float64)
    if np.linalg.det(m) <= 0:
        return False
    sx, sy = np.linalg.norm(m[:, 0]), np.linalg.norm(m[:, 1])
    turn = abs(np.arctan2(m[1, 0] - m[0, 1], m[0, 0] + m[1, 1]))
    centre = m @ np.array([THUMB / 2, THUMB / 2]) + warp[:, 2] - THUMB / 2
    return (1 / _MAX_ZOOM <= min(sx, sy) and max(sx, sy) <= _MAX_ZOOM and turn <= _MAX_TURN
            and abs(float(m[:, 0] @ m[:, 1])) / (sx * sy) <= _MAX_SHEAR
            and float(np.abs(centre).max()) <= _MAX_SHIFT * THUMB)  # fmt: skip


@dataclass
class _Compared:
    differs: np.ndarray  # GRID x GRID bool: blocks that differ (blocks b does not cover agree)
    compared: int  # blocks that could be compared (0: the pair cannot be told a copy)
    ncc: float  # over the overlap
    tone: float  # see Match.tone


def _blocks(a: np.ndarray, b: np.ndarray, warp: np.ndarray | None) -> _Compared:
    """Compare a with b mapped onto a's grid by `warp` (None: b as it is, without resampling), block by block."""
    n, g = DETAIL, DETAIL // _BLOCK
    if warp is None:
        bw, cover = b, np.ones((n, n), bool)
    else:
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        bw = cv2.warpAffine(b, warp, (n, n), flags=flags)
        cover = cv2.warpAffine(np.full((n, n), 255, np.uint8), warp, (n, n), flags=flags) == 255
    # Grey levels of b mapped onto a's distribution over the overlap: undoes any monotone change (brightness,
    # contrast, gamma) whatever its shape, and costs two 256-bin histograms.
    mask = None if warp is None else cover.astype(np.uint8)
    ha = cv2.calcHist([a], [0], mask, [256], [0, 256]).ravel().cumsum()
    hb = cv2.calcHist([bw], [0], mask, [256], [0, 256]).ravel()
    used = hb > 0
    hb = hb.cumsum()
    lut = np.interp(hb / max(1, hb[-1]), ha / max(1, ha[-1]), np.arange(256, dtype=np.float64)).astype(np.float32)
    tone = float(np.abs(lut - np.arange(256))[used].max()) if used.any() else 0.0
    x = cv2.GaussianBlur(a.astype(np.float32), (0, 0), _SIGMA)
    y = cv2.GaussianBlur(cv2.LUT(bw, lut), (0, 0), _SIGMA)
    # Block moments by area averaging (one cv2 call each) rather than numpy reshapes: a third of the time.
    mean = [cv2.resize(v, (g, g), interpolation=cv2.INTER_AREA) for v in (x, y, x * x, y * y, x * y)]
    mx, my, mxx, myy, mxy = (m.astype(np.float64) for m in mean)
    sx, sy = np.sqrt(np.maximum(mxx - mx * mx, 0.0)), np.sqrt(np.maximum(myy - my * my, 0.0))
    local = (mxy - mx * my) / (sx * sy + 1e-6)
    rms = np.sqrt(np.maximum(mxx + myy - 2 * mxy, 0.0))
    full = cv2.resize(cover.astype(np.float32), (g, g), interpolation=cv2.INTER_AREA) > 0.999
    textured, flat = (sx > _FLAT) & (sy > _FLAT), (sx <= _FLAT) & (sy <= _FLAT)
    # A block differs when both halves have texture that does not correlate, or both are flat at other levels.
    # Texture on one side only is what clipping does to a brightened copy: not counted either way.
    differs = full & (rms > _ABS_TOL) & ((textured & (local < _MIN_LOCAL)) | flat)
    if full.sum() < full.size * 0.3:
        return _Compared(differs, 0, 0.0, tone)
    # The NCC of the whole overlap, from the same moments (fully covered blocks).
    ex, ey, exx, eyy, exy = (m[full].mean() for m in (mx, my, mxx, myy, mxy))
    whole = float((exy - ex * ey) / (np.sqrt(max(exx - ex * ex, 0.0) * max(eyy - ey * ey, 0.0)) + 1e-9))
    return _Compared(differs, int((full & (textured | flat)).sum()), whole, tone)


def _verdict(c: _Compared, same_at: float, edit_at: float, min_similarity: float) -> tuple[str, float]:
    """edit: 3+ differing blocks, all in one compact blob covering at most `edit_at` of the frame; same: at most
    `same_at` of the compared blocks differ; else (or when the whole overlap correlates under `min_similarity`,
    or under a quarter of the blocks could be compared) different."""
    share = float(c.differs.sum() / max(1, c.compared))
    if c.ncc < min_similarity or c.compared < c.differs.size // 4:
        return "different", share
    if c.differs.sum() >= 3:
        # Letters of a watermark leave agreeing blocks between them: close the gaps before finding the blob.
        closed = cv2.dilate(c.differs.astype(np.uint8), np.ones((3, 3), np.uint8))
        _, labels, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
        big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        w, h = stats[big, cv2.CC_STAT_WIDTH], stats[big, cv2.CC_STAT_HEIGHT]
        if w * h <= edit_at * c.differs.size and not (c.differs & (labels != big)).any():
            return "edit", share
    return ("same" if share <= same_at else "different"), share


def match_thumbs(
    thumb_a: np.ndarray, thumb_b: np.ndarray, same_at: float = 0.04, edit_at: float = 0.12,
    min_similarity: float = 0.75,
) -> Match:  # fmt: skip
    """Align b on a (mirror, then identity or ECC's affine map) and give the verdict (module docstring)."""
    sa, sb = small_view(thumb_a), small_view(thumb_b)
    flipped = ncc(sa, sb[:, ::-1]) > ncc(sa, sb) + 0.02
    if flipped:
        thumb_b, sb = np.ascontiguousarray(thumb_b[:, ::-1]), np.ascontiguousarray(sb[:, ::-1])
    limits = (same_at, edit_at, min_similarity)

    def judged(warp: np.ndarray | None) -> tuple[str, float, _Compared]:
        c = _blocks(thumb_a, thumb_b, warp)
        verdict, changed = _verdict(c, *limits)
        if verdict == "different":
            return verdict, changed, c
        # Both ways, the worse verdict: b's grey levels mapped onto a flat-ish a lose b's texture (a blurred
        # backdrop "agrees" with any other), and the other way round shows it.
        back = _blocks(thumb_b, thumb_a, None if warp is None else cv2.invertAffineTransform(warp))
        v2, changed2 = _verdict(back, *limits)
        order = ("same", "edit", "different")
        return max((verdict, changed), (v2, changed2), key=lambda t: (order.index(t[0]), t[1])) + (c,)

    verdict, changed, c = judged(None)
    best = Match(verdict, flipped, np.eye(2, 3, dtype=np.float32), c.ncc, changed, c.tone)
    if verdict != "different" and changed == 0.0:
        return best  # nothing differs as it is: no geometry to look for
    warp = _ecc(sa, sb)
    if warp is not None:
        warp[:, 2] *= DETAIL / THUMB  # the map found on THUMB px views, on the DETAIL grid
        verdict, changed, c = judged(warp)
        if (verdict != "different", -changed) > (best.verdict != "different", -best.changed):
            best = Match(verdict, flipped, warp, c.ncc, changed, c.tone)
    return best
