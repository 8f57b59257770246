"""The near-duplicate check of candidate pairs, in rounds over the worker pool, from the scan's thumbnails.

    checked = confirm_pairs(pictures, candidates, linked, cfg, pool)  # [(i, j, same, rule, similarity, changed)]

No file is read again: each pair is judged from the two scan-time pictures (normalize.Picture), so a storage
outage after the scan cannot touch the verdicts, and a batch costs no decoding. On a worker pool the pictures
are views of the scan's thumbnail store (dedup.store): a batch pickles their store rows, not their pixels.

Rounds spare the checks that cannot change the grouping: round one checks each picture's best candidate; later
rounds only pairs whose two pictures are not yet in one group (already linked, directly or through a chain of
confirmed pairs or identical files), at most one pair per two groups a round. An original with eleven copies
then costs about eleven checks, not the 66 pairs among the twelve.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np

from finegrain.config import Config
from finegrain.preprocess.dedup.match import match_thumbs
from finegrain.preprocess.dedup.normalize import Picture, small_view
from finegrain.preprocess.dedup.rules import copy_rule
from finegrain.preprocess.workers import map_batches

Checked = tuple[int, int, bool, str, float, float]  # (i, j, same, rule, similarity, changed)


def confirm_job(job: tuple) -> list[tuple[bool, str, float, float]]:
    """(same, rule, similarity, changed) for each pair of a batch: job = ({key: Picture}, [(key_a, key_b)], params)."""
    pictures, pairs, params = job
    views: dict[int, np.ndarray] = {}  # a picture in several pairs of the batch is viewed once

    def view(key: int) -> np.ndarray:
        if key not in views:
            views[key] = small_view(pictures[key].thumb)
        return views[key]

    out = []
    for ka, kb in pairs:
        a, b = pictures[ka], pictures[kb]
        m = match_thumbs(a.thumb, b.thumb, same_at=params["confirm_max_changed"], edit_at=params["confirm_max_edit"],
                         min_similarity=params["confirm_min_similarity"], views=(view(ka), view(kb)))  # fmt: skip
        out.append(
            (m.same, copy_rule(m, a, b) if m.same else "", round(m.similarity, 4), round(m.changed, 4))
        )
    return out


class _Groups:
    """Union-find over row indices."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, x: int, y: int) -> None:
        self.parent[self.find(x)] = self.find(y)


def _rounds(candidates: list[tuple[int, int, float]], groups: _Groups, checked: set) -> list[tuple[int, int]]:
    """The next round's pairs: first each picture's best candidate, then at most one pair per two groups."""
    todo = [(i, j) for i, j, _ in candidates if (i, j) not in checked and groups.find(i) != groups.find(j)]
    if not checked:
        firsts: dict[int, tuple[int, int]] = {}
        for i, j in todo:  # candidates come best first
            firsts.setdefault(i, (i, j))
            firsts.setdefault(j, (i, j))
        return sorted(set(firsts.values()))
    one: dict[tuple[int, int], tuple[int, int]] = {}
    for i, j in todo:
        gi, gj = groups.find(i), groups.find(j)
        one.setdefault((min(gi, gj), max(gi, gj)), (i, j))
    return sorted(one.values())


def confirm_pairs(
    pictures: list[Picture | None],
    candidates: list[tuple[int, int, float]],
    linked: list[tuple[int, int]],
    cfg: Config,
    pool: ProcessPoolExecutor | None,
) -> list[Checked]:
    """Check candidate pairs (search.candidate_pairs, best first) in rounds; `linked` are pairs already known to
    be one picture (identical files). Returns every pair checked, in the order checked."""
    pp = cfg.preprocess
    params = pp.model_dump()
    groups = _Groups(len(pictures))
    for i, j in linked:
        groups.union(i, j)
    done: set[tuple[int, int]] = set()
    out: list[Checked] = []
    while True:
        pairs = _rounds(candidates, groups, done)
        if not pairs:
            return out
        # Batches of up to 32 pairs, 8 or more per worker: the last batch keeps one worker busy alone for ~15 ms
        # at most (128-pair batches left the other idle for up to ~60 ms a round).
        per_job = max(8, min(32, len(pairs) // (max(1, pp.workers) * 8)))
        jobs = []
        for start in range(0, len(pairs), per_job):
            batch = pairs[start : start + per_job]
            jobs.append(({k: pictures[k] for pair in batch for k in pair}, batch, params))
        results = map_batches(confirm_job, jobs, [len(b) for _, b, _ in jobs], "confirming near duplicates",
                              "pair", pool)  # fmt: skip
        for (i, j), r in zip(pairs, (r for rs in results for r in rs)):
            done.add((i, j))
            out.append((i, j, *r))
            if r[0]:
                groups.union(i, j)
