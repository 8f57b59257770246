"""The strict checks on an aligned pair of grays: NCC, a 256-bit DCT hash distance and the worst local block.

    check = compare(patch, (0.0, 0.0), small, ncc(patch, small), max_dct_distance=40, min_similarity=0.9,
                    max_local_diff=0.18, block=EXACT_BLOCK)

A re-encoded, resized or slightly cropped copy passes all three; a look-alike (same car and pose, another decal,
background or wheel angle) correlates well overall but fails the block check.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from finegrain.preprocess.dedup.hashing import dct_hash_bits

_COMPARE = 32  # the 256-bit DCT hash of an aligned pair is taken at this size
# The local difference check: worst block mean of |z(a) - z(b)|, blocks of EXACT_BLOCK working pixels when the
# pair was aligned on whole source pixels and resampled once (pair_check._exact), SEARCH_BLOCK with SEARCH_BAR x
# the bar after the general search's interpolated alignment (pair_align.search). Measured on the bench sets
# (copies' max vs look-alikes' min): exact, 3-px blocks: 0.117 vs 0.30 at 192x144, 0.033 vs 0.41 at 600x450
# (6-px blocks: 0.077 vs 0.145, that look-alike a 3-px decal); searched, crops of 600x450 photos on the working
# grays: 0.14 on 6-px blocks (0.25 on 3-px ones), against the general search's 0.15.
EXACT_BLOCK = 3
SEARCH_BLOCK = 6
SEARCH_BAR = 0.15 / 0.18


@dataclass
class PairCheck:
    same: bool
    ncc: float  # after alignment, at working resolution
    dct_distance: int  # 256-bit DCT hash distance of the aligned pair
    local_diff: float  # worst block mean |z(a) - z(b)| after a light blur (EXACT_/SEARCH_BLOCK): local edits
    note: str = ""


def z(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    return x / (x.std() + 1e-6)


def ncc(x: np.ndarray, y: np.ndarray) -> float:
    """NCC of two same-shape arrays (numpy: cv2.matchTemplate takes its FFT path at this size, 7x slower)."""
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (np.sqrt((x * x).sum() * (y * y).sum()) + 1e-12))


def compare(
    patch: np.ndarray, frac: tuple[float, float], small: np.ndarray, ncc: float, max_dct_distance: int, min_similarity: float,
    max_local_diff: float, block: int = SEARCH_BLOCK,
) -> PairCheck:  # fmt: skip
    """The strict checks on an aligned pair: NCC, 256-bit DCT hash distance, worst local block difference."""
    # The same smoothing on both: a bilinear shift by f blurs with variance f(1 - f), so the template gets it too.
    sx, sy = (float(np.sqrt(1.0 + f * (1.0 - f))) for f in frac)
    p, q = cv2.GaussianBlur(patch, (0, 0), 1.0), cv2.GaussianBlur(small, (0, 0), sigmaX=sx, sigmaY=sy)
    diff = np.abs(z(p) - z(q))
    gh, gw = diff.shape[0] // block, diff.shape[1] // block
    local = float(diff[: gh * block, : gw * block].reshape(gh, block, gw, block).mean(axis=(1, 3)).max())
    to32 = [cv2.resize(x, (_COMPARE, _COMPARE), interpolation=cv2.INTER_AREA) for x in (patch, small)]
    dist = int(np.count_nonzero(dct_hash_bits(to32[0], 16) != dct_hash_bits(to32[1], 16)))
    same = ncc >= min_similarity and dist <= max_dct_distance and local <= max_local_diff
    return PairCheck(same, ncc, dist, local)
