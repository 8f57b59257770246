"""Whether two pictures' thumbnails show the same picture, and how one was made from the other.

    m = match_thumbs(thumb_a, thumb_b)   # Match(verdict, flipped, affine, similarity, changed)

The thumbnails (normalize.thumbnail: DETAIL px, borders trimmed, orientation applied) no longer show a letterbox
or an EXIF turn. What is left: a mirror image (taken when it correlates better), a geometric change (a crop
scaled back, a small rotation, a resize to another shape) found as an affine map by ECC (cv2.findTransformECC on
48-px views, started from the best of a few crop hypotheses; refined on the 128-px thumbnails where a soft
picture leaves the small views too little), and a brightness, contrast or gamma change, undone by mapping b's
grey levels onto a's distribution (histogram matching over the overlap).

Then the verdict, block by block (8x8 px blocks of the DETAIL thumbnails): two textured blocks differ when they
no longer correlate, two flat ones when their levels part. Copies differ in almost no block ("same");
a watermark, logo or other local edit differs in one compact blob and nowhere else ("edit"); different pictures
of one scene (another pose, another part of a landscape) differ in blocks all over the frame ("different").

Order, for speed (the check is most of preprocess's time after decoding): a pair whose small views correlate
closely as they are is judged as it is first, and a copy found so ends there; the others look for their
geometry first, and are judged as they are only when no crop or turn makes them a copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from finegrain.preprocess.dedup.align import ecc, map_parts, ncc_and_mirrored, rescaled, start_map
from finegrain.preprocess.dedup.normalize import DETAIL, THUMB, small_view

_BLOCK = 8  # px of the DETAIL thumbnail per verdict block
_SIGMA = 1.0  # px of blur both get before the block comparison (resampling and JPEG noise is finer)
_ABS_TOL = 8.0  # grey levels of residual a block always tolerates (JPEG q30 and resampling stay under it)
_FLAT = 4.0  # grey levels of standard deviation under which a block has no texture to compare
_MIN_LOCAL = 0.5  # NCC two textured blocks of a copy keep (different texture: near 0)
# A block differs plainly (not by noise or a resampled edge): textures anti-correlated, or flat levels this many
# times the tolerance apart.
_STRONG, _STRONG_LOCAL = 2.0, 0.0
_MIN_COVER = 0.55  # see _verdict
_TEXTURED_ENOUGH = 0.5  # see match_thumbs.judged
# ECC only runs when the identity or a crop hypothesis already correlates this well on 32-px views: crops and
# turns of a picture do (0.8 cost the bench a tenth of its turned copies; 0.6 none), many other pictures of a
# scene do not, and their check then costs no ECC.
_MIN_START = 0.6
# The refinement on full thumbnails (match_thumbs) only where the start correlates this well: the soft copies
# it rescued on the real-photo bench started at 0.88-0.99, the synthetic renders' other candidates at ~0.82.
_MIN_REFINE = 0.88
# Small views correlating this well as they are (or mirrored) are judged as they are before any geometry is
# looked for: re-saves, resizes, tone changes and watermarks on the real-photo bench start at 0.87-1.00, crops
# and turns of a few percent or degrees mostly lower, other pictures of a scene at a median of 0.2.
_LIKE_AS_IS = 0.95
_ECC_SIDE = 48  # px of the views ECC aligns (see match_thumbs)


@dataclass
class Match:
    verdict: str  # "same", "edit" (one local blob differs: a watermark, logo, decal) or "different"
    flipped: bool  # b was mirrored to match a
    affine: np.ndarray  # 2x3 map from a's DETAIL grid to b's (identity: no geometric change)
    similarity: float  # NCC of the two where they overlap, after alignment and grey-level matching
    changed: float  # share of the overlap's blocks that differ
    tone: float = 0.0  # grey levels the level mapping moves b's pixels on average (a tone change)

    @property
    def same(self) -> bool:
        return self.verdict != "different"

    def geometry(self) -> dict[str, float]:
        """zoom (>1: b shows a's picture cropped), turn (degrees), shift (share of the side), aspect change."""
        sx, sy, turn, _, shift = map_parts(self.affine, DETAIL)
        return {
            "zoom": float(1 / np.sqrt(sx * sy)),
            "turn": float(np.degrees(turn)),
            "shift": shift,
            "aspect": sx / sy,
        }


@dataclass
class _Compared:
    differs: np.ndarray  # GRID x GRID bool: blocks that differ (blocks b does not cover agree)
    compared: int  # blocks that could be compared (0: the pair cannot be told a copy)
    covered: float  # share of a's pixels that b covers after alignment
    ncc: float  # over the overlap
    tone: float  # see Match.tone
    textured: float = 0.0  # share of covered blocks with texture on both sides
    clipped: bool = False  # b has many more pure black or white pixels than a (a brightened copy)
    strong: int = 0  # blocks that differ plainly (another texture, or levels far apart), not by noise


def _level_map(ha: np.ndarray, hb: np.ndarray) -> np.ndarray:
    """256-entry float32 LUT sending b's grey levels to a's by matching the two histograms' quantiles."""
    ca, cb = ha.cumsum(), hb.cumsum()
    return np.interp(cb / max(1, cb[-1]), ca / max(1, ca[-1]), np.arange(256, dtype=np.float64)).astype(np.float32)


def _blocks(a: np.ndarray, b: np.ndarray, warp: np.ndarray | None) -> _Compared:
    """Compare a with b mapped onto a's grid by `warp` (None: b as it is, without resampling), block by block."""
    n, g = DETAIL, DETAIL // _BLOCK
    if warp is None:
        bw, mask, full, covered = b, None, np.ones((g, g), bool), 1.0
    else:
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        bw = cv2.warpAffine(b, warp, (n, n), flags=flags)
        cover = cv2.warpAffine(np.full((n, n), 255, np.uint8), warp, (n, n), flags=flags) == 255
        mask = cover.astype(np.uint8)
        full = cv2.resize(cover.astype(np.float32), (g, g), interpolation=cv2.INTER_AREA) > 0.999  # whole blocks
        covered = float(cover.mean())
    # Grey levels of b mapped onto a's distribution over the overlap: undoes any monotone change (brightness,
    # contrast, gamma) whatever its shape, and costs two 256-bin histograms.
    ha = cv2.calcHist([a], [0], mask, [256], [0, 256]).ravel()
    counts = cv2.calcHist([bw], [0], mask, [256], [0, 256]).ravel()
    clipped = (counts[0] + counts[255]) - (ha[0] + ha[255]) > 0.03 * max(1.0, counts.sum())
    lut = _level_map(ha, counts)
    # How far the mapping moves b's pixels on average: a tone change moves most of them, noise a level or two.
    tone = float((counts * np.abs(lut - np.arange(256))).sum() / max(1.0, counts.sum()))
    x = cv2.GaussianBlur(a.astype(np.float32), (0, 0), _SIGMA)
    y = cv2.GaussianBlur(cv2.LUT(bw, lut), (0, 0), _SIGMA)
    # Block moments by area averaging, one cv2 call each (a check's costliest part was numpy's calls on 16x16
    # arrays, not the pixels; one call on a merged 5-channel picture spent more merging than averaging).
    moments = np.stack(
        [cv2.resize(v, (g, g), interpolation=cv2.INTER_AREA) for v in (x, y, x * x, y * y, x * y)]
    ).astype(np.float64)
    mx, my, mxx, myy, mxy = moments
    sx, sy = np.sqrt(np.maximum(mxx - mx * mx, 0.0)), np.sqrt(np.maximum(myy - my * my, 0.0))
    local = (mxy - mx * my) / (sx * sy + 1e-6)
    rms = np.sqrt(np.maximum(mxx + myy - 2 * mxy, 0.0))
    textured, flat = (sx > _FLAT) & (sy > _FLAT), (sx <= _FLAT) & (sy <= _FLAT)
    # A block differs when both halves have texture that does not correlate, or both are flat at other levels.
    # Texture on one side only is what clipping does to a brightened copy: not counted either way.
    differs = full & (rms > _ABS_TOL) & ((textured & (local < _MIN_LOCAL)) | flat)
    n_full = int(full.sum())
    if n_full < full.size * 0.3:
        return _Compared(differs, 0, covered, 0.0, tone)
    # The NCC of the whole overlap, from the same moments (fully covered blocks).
    ex, ey, exx, eyy, exy = moments[:, full].mean(axis=1)
    whole = float((exy - ex * ey) / (np.sqrt(max(exx - ex * ex, 0.0) * max(eyy - ey * ey, 0.0)) + 1e-9))
    strong = differs & ((flat & (rms > _STRONG * _ABS_TOL)) | (textured & (local < _STRONG_LOCAL)))
    return _Compared(
        differs,
        int((full & (textured | flat)).sum()),
        covered,
        whole,
        tone,
        float((full & textured).sum() / n_full),
        clipped,
        int(strong.sum()),
    )


def _verdict(c: _Compared, same_at: float, edit_at: float, min_similarity: float) -> tuple[str, float]:
    """edit: 2+ differing blocks, all in one compact blob covering at most `edit_at` of the frame, or at most
    `same_at` of the blocks differing of which one plainly; same: at most `same_at` of the compared blocks
    differ, by noise; else (or when the whole overlap correlates under `min_similarity`, or under a quarter of
    the blocks could be compared) different."""
    share = float(c.differs.sum() / max(1, c.compared))
    # A copy cropped by up to ~12 % per edge still covers ~60 % of its original; a map that lines up less
    # (zooming into the one part two pictures share, say the car with its background cut away) proves nothing.
    if c.ncc < min_similarity or c.compared < c.differs.size // 4 or c.covered < _MIN_COVER:
        return "different", share
    if c.differs.sum() >= 2:
        # Letters of a watermark leave agreeing blocks between them: close the gaps before finding the blob.
        closed = cv2.dilate(c.differs.astype(np.uint8), np.ones((3, 3), np.uint8))
        _, labels, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
        big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        w, h = stats[big, cv2.CC_STAT_WIDTH], stats[big, cv2.CC_STAT_HEIGHT]
        if w * h <= edit_at * c.differs.size and not (c.differs & (labels != big)).any():
            return "edit", share
    if share > same_at:
        return "different", share
    # A few blocks off by JPEG noise or a resampled edge: a copy. One that plainly differs (a decal, a wheel
    # turned, a logo, what moved between two frames) may be another picture: an edit, kept in one fold.
    return ("edit" if c.strong else "same"), share


def match_thumbs(
    thumb_a: np.ndarray, thumb_b: np.ndarray, same_at: float = 0.04, edit_at: float = 0.12,
    min_similarity: float = 0.75, views: tuple[np.ndarray, np.ndarray] | None = None,
) -> Match:  # fmt: skip
    """Align b on a (mirror, then identity or ECC's affine map) and give the verdict (module docstring).

    views: the two thumbnails' small_view, when the caller already has them (a picture in several pairs)."""
    sa, sb = views if views is not None else (small_view(thumb_a), small_view(thumb_b))
    as_is, mirrored = ncc_and_mirrored(sa, sb)
    flipped = mirrored > as_is + 0.02
    if flipped:
        thumb_b, sb = np.ascontiguousarray(thumb_b[:, ::-1]), np.ascontiguousarray(sb[:, ::-1])
    limits = (same_at, edit_at, min_similarity)

    def judged(warp: np.ndarray | None) -> Match:
        c = _blocks(thumb_a, thumb_b, warp)
        verdict, changed = _verdict(c, *limits)
        if verdict != "different" and c.textured < _TEXTURED_ENOUGH and not c.clipped:
            # Both ways, the worse verdict: b's grey levels mapped onto a flat-ish a lose b's texture (a blurred
            # backdrop "agrees" with any other), and the other way round shows it. Not when b is clipped (a copy
            # brightened to pure white in places): the other way round would only count what the clipping erased.
            back = _blocks(thumb_b, thumb_a, None if warp is None else cv2.invertAffineTransform(warp))
            v2, changed2 = _verdict(back, *limits)
            order = ("same", "edit", "different")
            verdict, changed = max((verdict, changed), (v2, changed2), key=lambda t: (order.index(t[0]), t[1]))
        return Match(verdict, flipped, np.eye(2, 3, dtype=np.float32) if warp is None else warp, c.ncc, changed,
                     c.tone)  # fmt: skip

    # Pictures that correlate closely as they are (a re-save, resize, tone change, watermark) are judged as they
    # are first: most copies end there. The others (crops, turns, other pictures) first look for their geometry.
    best = judged(None) if max(as_is, mirrored) >= _LIKE_AS_IS else None
    if best is not None and best.verdict == "same":
        # A copy as it is: what differs is noise, and finding a slight crop would not change what is done with
        # it (dropped either way). An edit goes on: the blob may be the edge a slight crop moved (dropped) rather
        # than a watermark (kept in one fold).
        return best
    start, score = start_map(sa, sb)
    warp = None  # when no crop or turn lines them up even roughly (score < _MIN_START): no ECC
    if score >= _MIN_START:
        # ECC on the small views scaled to _ECC_SIDE: a quarter cheaper than on the 64-px views (its cost is
        # mostly per step, not per pixel), and on the real-photo bench it converged from farther (recall of
        # crops and turns 0.98-0.99, was 0.97-0.99).
        ea, eb = (cv2.resize(v, (_ECC_SIDE, _ECC_SIDE), interpolation=cv2.INTER_AREA) for v in (sa, sb))
        warp = ecc(ea, eb, rescaled(start, _ECC_SIDE / THUMB))
    aligned = None
    if warp is not None:
        warp = rescaled(warp, DETAIL / _ECC_SIDE)  # the map found on the ECC views, on the DETAIL grid
        aligned = judged(warp)
        if best is None and aligned.same:
            return aligned  # a crop or turn, lined up: judging it as it is could not make it more a copy
    best = best if best is not None else judged(None)
    if aligned is not None and (aligned.same, -aligned.changed) > (best.same, -best.changed):
        best = aligned
    if best.same or score < _MIN_REFINE:
        return best
    # Soft pictures (clouds, water, bokeh) give the small views too little to hold ECC on: refine on the full
    # thumbnails, from where the small views left it. Only pairs still judged different whose small views line
    # up closely pay for it (a soft picture's do; on the synthetic renders, most other pairs' do not).
    if warp is None:
        warp = rescaled(start, DETAIL / THUMB)
    blur = [cv2.GaussianBlur(x.astype(np.float32), (0, 0), _SIGMA) for x in (thumb_a, thumb_b)]
    fine = ecc(*blur, warp)
    if fine is not None:
        refined = judged(fine)
        if refined.same:
            best = refined
    return best
