"""Find exact and near-duplicate candidates: perceptual hashes, a blocked popcount search, and grouping.

    fp = fingerprint(rgb_image)                         # 64-bit pHashes (whole, inner crop) + 64x64 thumbnail
    pairs = find_candidate_pairs(hashes, max_distance)  # all pairs within a Hamming distance, vectorised
    groups = connected_groups(n, pairs)                 # connected components; -1 for rows in no group

The 64-bit pHash is coarse: different pictures of the same car model shot the same way land a few bits apart. So
a candidate pair only becomes a near duplicate once `pair_check.confirm_near_duplicate` has aligned the two
pictures and found them the same pixel for pixel.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

INNER_CROP = 0.045  # a copy cropped by ~3-6 % per edge hashes like its original minus this much per edge
THUMB = 64  # thumbnail side kept per image for confirmation (4 KiB each: 135 MB at 33k images)


@dataclass
class Fingerprint:
    phash: int  # 64-bit pHash of the whole picture, as an unsigned int
    phash_inner: int  # pHash of the picture minus INNER_CROP per edge: what a slightly cropped copy hashes to
    thumb: np.ndarray  # THUMB x THUMB uint8 grayscale


@functools.lru_cache(maxsize=8)
def _dct_rows(n: int, k: int) -> np.ndarray:
    """The first k rows of the orthonormal n-point DCT-II matrix: dctn(x, norm="ortho")[:k, :k] = D x D^T."""
    i = np.arange(n)
    rows = np.cos(np.pi * (2 * i[None, :] + 1) * np.arange(k)[:, None] / (2 * n)) * np.sqrt(2.0 / n)
    rows[0] /= np.sqrt(2.0)
    return rows


def dct_hash_bits(gray: np.ndarray, hash_size: int) -> np.ndarray:
    """Bits of a DCT hash: the hash_size x hash_size lowest frequencies compared with their median."""
    h, w = gray.shape
    # Two small matrix products give only the coefficients we keep (a full 2-D DCT computes all of them).
    coeffs = _dct_rows(h, hash_size) @ gray.astype(np.float64) @ _dct_rows(w, hash_size).T
    flat = np.sort(coeffs.ravel())
    median = 0.5 * (flat[(flat.size - 1) // 2] + flat[flat.size // 2])
    return (coeffs > median).ravel()


def small_grays(img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """What the hashes and the pair check need from one picture: 32x32 grays of the whole picture and of its inner
    crop (stacked, float64) and the THUMB x THUMB uint8 thumbnail. Area averaging (cv2 INTER_AREA, like PIL's
    BOX): the same picture at any resolution gives (nearly) the same small grays."""
    gray = np.asarray(img if img.mode == "L" else img.convert("L"))  # the scan decodes JPEGs as luma already
    h, w = gray.shape
    inner = gray[round(h * INNER_CROP) : round(h * (1 - INNER_CROP)), round(w * INNER_CROP) : round(w * (1 - INNER_CROP))]
    smalls = np.stack([cv2.resize(x, (32, 32), interpolation=cv2.INTER_AREA) for x in (gray, inner)])
    return smalls.astype(np.float64), cv2.resize(gray, (THUMB, THUMB), interpolation=cv2.INTER_AREA)


def phashes(smalls: np.ndarray) -> np.ndarray:
    """64-bit pHashes (uint64) of a stack of 32x32 grays, [..., 32, 32]: the classic 8x8 lowest DCT frequencies
    compared with their median. Vectorised over the stack: hashing a chunk of pictures at once costs one call
    per chunk instead of a dozen small numpy calls per picture (a third of the scan at 192x144)."""
    d = _dct_rows(32, 8)
    coeffs = (d @ smalls @ d.T).reshape(*smalls.shape[:-2], 64)
    bits = coeffs > np.median(coeffs, axis=-1, keepdims=True)
    return np.packbits(bits, axis=-1).view(">u8")[..., 0].astype(np.uint64)


def fingerprint(img: Image.Image) -> Fingerprint:
    """pHash (the classic 32x32 DCT, 8x8 low frequencies vs their median), inner-crop pHash, thumbnail."""
    smalls, thumb = small_grays(img)
    whole, inner = phashes(smalls).tolist()
    return Fingerprint(whole, inner, thumb)


def hash_hex(value: int) -> str:
    """A 64-bit hash as 16 lowercase hex digits (the manifest's phash column)."""
    return f"{int(value) & 0xFFFFFFFFFFFFFFFF:016x}"


def hex_to_hash(text: str) -> int:
    return int(text, 16)


def find_candidate_pairs(
    hashes: np.ndarray, max_distance: int, other: np.ndarray | None = None, block: int = 512
) -> np.ndarray:
    """Pairs (i < j) within `max_distance` bits, as a sorted, unique [m, 2] int64 array.

    Without `other`: hashes[i] vs hashes[j]. With `other` (a second hash per item, e.g. the inner-crop pHash):
    other[i] vs hashes[j] for every i != j, so a crop of i's picture is found whichever of the two is the copy.
    Exhaustive but vectorised: XOR a block of rows against all hashes and popcount (np.bitwise_count), so 33k
    hashes (5.5e8 pairs) take seconds and memory stays at block x n bytes.
    """
    h = np.ascontiguousarray(np.asarray(hashes, dtype=np.uint64))
    rows = h if other is None else np.ascontiguousarray(np.asarray(other, dtype=np.uint64))
    n = len(h)
    found: list[np.ndarray] = []
    for start in range(0, n, block):
        stop = min(start + block, n)
        # Same-hash search: only j > i (the block against itself and everything after it).
        first = start if other is None else 0
        dist = np.bitwise_count(rows[start:stop, None] ^ h[None, first:])
        ii, jj = np.nonzero(dist <= max_distance)
        ii, jj = ii + start, jj + first
        keep = jj != ii if other is not None else jj > ii
        if keep.any():
            found.append(np.stack([np.minimum(ii, jj)[keep], np.maximum(ii, jj)[keep]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found).astype(np.int64), axis=0)


def connected_groups(n: int, pairs: np.ndarray | list[tuple[int, int]]) -> np.ndarray:
    """Group ids for n items linked by pairs: 0.. in order of each group's first item; -1 = alone."""
    edges = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    grouped = np.bincount(component, minlength=n)[component] > 1
    # scipy numbers components in its own order; renumber by first item so ids are stable and readable.
    firsts, first_item = np.unique(component[grouped], return_index=True)
    new_id = np.empty(n, dtype=np.int64)
    new_id[firsts[np.argsort(first_item)]] = np.arange(len(firsts))
    out = np.full(n, -1, dtype=np.int64)
    out[grouped] = new_id[component[grouped]]
    return out
