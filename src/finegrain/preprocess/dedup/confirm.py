"""The strict pixel check of near-duplicate candidate pairs, batched for worker processes.

    results = confirm_pairs(table, thumbs, [(i, j), ...], cfg, pool)  # [(same, ncc, dct_distance, local_diff)]

Each batch (confirm_job) decodes a picture once however many of its candidates it holds, and never decodes one
whose thumbnails already tell it apart (pair_check.coarse_match). Runs in the preprocess step's worker pool.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from finegrain.config import Config
from finegrain.preprocess.dedup import pair_check
from finegrain.preprocess.validate import check_image, read_file
from finegrain.preprocess.workers import UnreadableFilesError, map_batches, storage_rounds


def confirm_job(job: tuple) -> list[tuple[bool, float, int, float]]:
    """Run the strict same-picture check on a batch of candidate pairs, decoding each picture once per scale.

    job = (images {key: (uri, (w, h), thumb)}, pairs [(key_a, key_b)], params). Pairs are batched by their first
    image, so a picture with several candidates (common: a car model shot the same way) is decoded once, and a
    pair whose thumbnails already differ (stage one) is never decoded at all.
    """
    images, pairs, params = job
    decoded: dict[int, tuple[np.ndarray, int] | None] = {}  # key -> (float32 luma, JPEG draft reduction 1/2/4/8)
    grays: dict[tuple, np.ndarray | None] = {}

    def pixels(key: int) -> tuple[np.ndarray, int] | None:
        if key not in decoded:
            uri, (w, h), _ = images[key]
            # Draft only down to twice the working size: a DCT-scaled decode samples each file on its own 8x8 block
            # grid, which a crop does not share with its original, and drafted close to the working size that
            # misaligned crops (600x450 copies, drafted to >= 256: recall 1.00 -> 0.71; 1200x900 drafted to
            # >= 256: 1.00 -> 0.97; both decode in full at >= 512 and score 1.00). Only photos over ~1024 px on
            # the short side are drafted, by 1/2 or more, and then area-averaged down by 2x or more. Luma only:
            # a colour JPEG's Y channel is its gray, without chroma upsampling and colour conversion.
            data, why = read_file(uri)  # a transient failure raises: map_batches reruns the batch
            if data is None:  # read by the scan a moment ago, gone now
                raise UnreadableFilesError(f"{uri}: {why}")
            checked = check_image(data, max_pixels=params["max_pixels"],
                                  draft_size=2 * pair_check.WORK_SIDE, gray=True)  # fmt: skip
            img = checked.image
            decoded[key] = None if img is None else (np.asarray(img, dtype=np.float32), round(w / img.width))
        return decoded[key]

    def gray(key: int, scale: float) -> np.ndarray | None:
        if (key, scale) not in grays:
            px = pixels(key)
            grays[key, scale] = None if px is None else pair_check.working_gray(px[0], images[key][1], scale)
        return grays[key, scale]

    out = []
    for ka, kb in pairs:
        (size_a, thumb_a), (size_b, thumb_b) = images[ka][1:], images[kb][1:]
        coarse = pair_check.coarse_match(thumb_a, thumb_b, params["confirm_min_similarity"], (size_a, size_b))
        if not coarse.ok:
            r = coarse.rejection()
            out.append((r.same, r.ncc, r.dct_distance, r.local_diff))
            continue
        # One scale for both, relative to native pixels, so a pure crop lines up 1:1.
        scale = min(1.0, pair_check.WORK_SIDE / max(*size_a, *size_b))
        a, b = gray(ka, scale), gray(kb, scale)
        if a is None or b is None:
            out.append((False, 0.0, 256, float("inf")))
            continue
        # The exact-geometry alignment resamples each picture once from its decoded pixels, which must then be on
        # the same scale: both native (short side under 2 x WORK_SIDE), or both drafted by the same factor.
        pa, pb = pixels(ka), pixels(kb)
        native = (pa[0], pb[0]) if pa[1] == pb[1] else None
        r = pair_check.confirm_near_duplicate(
            a, b, thumb_a, thumb_b, max_dct_distance=params["confirm_distance"],
            min_similarity=params["confirm_min_similarity"], max_local_diff=params["confirm_max_local_diff"],
            coarse=coarse, native=native,
        )  # fmt: skip
        out.append((r.same, r.ncc, r.dct_distance, r.local_diff))
    return out


def confirm_pairs(
    table: pd.DataFrame,
    thumbs: list,
    pairs: list[tuple[int, int]],
    cfg: Config,
    pool: ProcessPoolExecutor | None,
) -> list[tuple[bool, float, int, float]]:
    """Results of confirm_job for every (row, row) pair, in order; inline in the parent when there are few."""
    pp = cfg.preprocess
    params = pp.model_dump()
    per_job = max(4, min(64, len(pairs) // (pp.workers * 8)))

    # Plain lists, not table.at per cell: pandas' scalar access cost ~0.1 ms per pair, a tenth of the check.
    paths, widths, heights = (table[c].tolist() for c in ("path", "width", "height"))

    def image(i: int) -> tuple:
        return paths[i], (int(widths[i]), int(heights[i])), thumbs[i]

    jobs = []
    for start in range(0, len(pairs), per_job):
        batch = pairs[start : start + per_job]
        jobs.append(({i: image(i) for pair in batch for i in pair}, batch, params))
    sizes = [len(batch) for _, batch, _ in jobs]
    rounds = storage_rounds(cfg)
    done = map_batches(confirm_job, jobs, sizes, "confirming near duplicates", "pair", pool, rounds=rounds)
    return [result for batch_results in done for result in batch_results]
