"""Near-duplicates per kind of copy on real photos: finegrain vs imagededup's PHash (`make bench-dedup`).

    python -m bench.preprocess --photos --workers 2 --repeat 3   # make bench-dedup

For each kind in dedup_kinds.KINDS, separately: the real 600x450 originals of dedup_photos plus one copy of each
made that way, in a folder of their own; both methods run on it. Recall: copies that end up in their original's
group. False merges: groups joining two different originals (look-alikes: same class; others: unrelated; frames
of one video, dedup_photos.BURSTS, are near-duplicates and get a row of their own). Then
every kind together (all originals and all copies, 12 images per original) for the speed: images/s of the
median of --repeat alternating runs, same images, same worker count.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench.dedup_kinds import KINDS, NAMED
from bench.dedup_photos import BURSTS, real_originals
from finegrain.preprocess.dedup.hashing import connected_groups


def write_set(root: Path, originals, kinds: list[str], seed: int = 0) -> dict[str, str]:
    """Write originals (JPEG q90) and one copy per kind of each; returns {file name: original's name}."""
    import io

    rng = np.random.default_rng(seed)
    owner = {}
    for name, _, img in originals:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        data = buf.getvalue()
        (root / f"{name}.jpg").write_bytes(data)
        owner[f"{name}.jpg"] = name
        for kind in kinds:
            copy = f"{name}__{kind}.jpg"
            (root / copy).write_bytes(KINDS[kind](data, rng))
            owner[copy] = name
    return owner


def _groups(pairs: set[frozenset], names: list[str]) -> dict[str, int]:
    """A group id per name, linked by pairs (finegrain's connected_groups); a name alone gets an id of its own."""
    index = {n: i for i, n in enumerate(names)}
    groups = connected_groups(len(names), [tuple(index[n] for n in pair) for pair in pairs])
    return {n: int(g) if g >= 0 else -1 - i for i, (n, g) in enumerate(zip(names, groups))}


def score(pairs: set[frozenset], owner: dict[str, str], cls: dict[str, str]) -> dict:
    """Recall per kind, and false merges (pairs of originals in one group) split by look-alike / unrelated."""
    group = _groups(pairs, list(owner))
    found: dict[str, list[bool]] = {}
    for name, orig in owner.items():
        if "__" in name:
            found.setdefault(name.split("__")[1].removesuffix(".jpg"), []).append(
                group[name] == group[f"{orig}.jpg"]
            )
    origs = sorted({o for o in owner.values()})
    merged = [(a, b) for a, b in itertools.combinations(origs, 2) if group[f"{a}.jpg"] == group[f"{b}.jpg"]]
    return {"recall": {k: float(np.mean(v)) for k, v in found.items()}, "merged": merged}


def pair_kind(a: str, b: str, cls: dict[str, str]) -> str:
    """What two originals are to each other: "look-alike", "burst" (frames of one video) or "unrelated"."""
    if cls[a] != cls[b]:
        return "unrelated"
    return "burst" if cls[a] in BURSTS else "look-alike"


def lookalike_pairs(cls: dict[str, str], burst: bool = False) -> int:
    """Pairs of originals in one class: look-alikes, or (burst) frames of one video."""
    by = pd.Series(cls).value_counts()
    by = by[[(c in BURSTS) == burst for c in by.index]]
    return int((by * (by - 1) // 2).sum())


def _named(rules: dict, owner: dict[str, str], kind: str) -> str:
    """Share of the kind's copies whose own pair with their original was checked and named as NAMED[kind]."""
    if kind == "exact":
        return "by bytes"
    pairs = [frozenset((f"{o}.jpg", n)) for n, o in owner.items() if n.endswith(f"__{kind}.jpg")]
    named = [NAMED[kind] in rules[p].split("+") for p in pairs if p in rules]
    return f"{np.mean(named):.2f} of {len(named)}" if named else "-"


def run_table(methods: dict, workers: int, distance: int, repeat: int) -> None:
    originals = real_originals()
    cls = {name: c for name, c, _ in originals}
    print(f"{len(originals)} real 600x450 originals in {len(set(cls.values()))} classes, "
          f"{lookalike_pairs(cls)} look-alike pairs (same class, different picture) and "
          f"{lookalike_pairs(cls, burst=True)} pairs of video frames moments apart; {workers} workers on "
          f"{os.cpu_count()} cores")  # fmt: skip
    rows: dict[str, dict] = {m: {} for m in methods}
    named, merged, dropped = {}, {m: set() for m in methods}, {m: set() for m in methods}
    per_kind = {m: [0, 0.0] for m in methods}  # images, seconds over the kind runs
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            root = Path(tmp) / kind
            root.mkdir()
            owner = write_set(root, originals, [kind])
            for m, fn in methods.items():
                r = fn(root, workers, distance)
                s = score(r["pairs"], owner, cls)
                rows[m][kind] = s["recall"][kind]
                merged[m] |= set(s["merged"])
                # Merged for training: only the links whose copies are dropped (imagededup: every pair it returns).
                dropped[m] |= set(
                    score(r["dropped"], owner, cls)["merged"] if r.get("dropped") is not None else s["merged"]
                )
                per_kind[m][0] += len(owner)
                per_kind[m][1] += r["seconds"]
                if r.get("rules"):
                    named[kind] = _named(r["rules"], owner, kind)
        root = Path(tmp) / "all"
        root.mkdir()
        owner = write_set(root, originals, list(KINDS))
        times: dict[str, list[float]] = {m: [] for m in methods}
        for _ in range(repeat):
            for m, fn in methods.items():
                r = fn(root, workers, distance)
                times[m].append(r["seconds"])
                rows[m]["all kinds together"] = float(
                    np.mean(list(score(r["pairs"], owner, cls)["recall"].values()))
                )
    first = list(methods)[0]
    print("\n| kind | " + " | ".join(f"{m}: recall" for m in methods) + f" | {first}: named as the kind |")
    print("|---|" + "---|" * (len(methods) + 1))
    for kind in [*KINDS, "all kinds together"]:
        print(
            f"| {kind} | "
            + " | ".join(f"{rows[m][kind]:.3f}" for m in methods)
            + f" | {named.get(kind, '')} |"
        )

    def of(kind: str, pairs: set) -> list:
        return sorted(p for p in pairs if pair_kind(*p, cls) == kind)

    look = {m: of("look-alike", merged[m]) for m in methods}
    look_dropped = {m: of("look-alike", dropped[m]) for m in methods}
    bursts = {m: of("burst", merged[m]) for m in methods}
    print("| look-alike pairs linked (distinct, over the kind runs) | "
          + " | ".join(str(len(v)) for v in look.values()) + " | |")  # fmt: skip
    print("| ... of which merged: one dropped as a duplicate | "
          + " | ".join(str(len(v)) for v in look_dropped.values()) + " | |")  # fmt: skip
    print("| unrelated pairs merged | "
          + " | ".join(str(len(of("unrelated", merged[m]))) for m in methods) + " | |")  # fmt: skip
    print(
        f"| frames of one video, moments apart (near-duplicates, not look-alikes): linked of "
        f"{lookalike_pairs(cls, burst=True)} | " + " | ".join(str(len(v)) for v in bursts.values()) + " | |"
    )
    print("| images/s over the kind runs (" + f"{per_kind[first][0]} images) | "
          + " | ".join(f"{n / t:.0f}" for n, t in per_kind.values()) + " | |")  # fmt: skip
    n = len(owner)
    rates = {m: n / float(np.median(t)) for m, t in times.items()}
    print(f"| images/s, all kinds together ({n} images, median of {repeat}) | "
          + " | ".join(f"{r:.0f}" for r in rates.values()) + " | |")  # fmt: skip
    base = list(methods)[-1]
    kinds_rate = {m: n_ / t for m, (n_, t) in per_kind.items()}
    print(f"\nspeed vs {base}: kind runs " + ", ".join(f"{m} {kinds_rate[m] / kinds_rate[base]:.2f}x" for m in methods)
          + "; all kinds together " + ", ".join(f"{m} {rates[m] / rates[base]:.2f}x" for m in methods))  # fmt: skip
    for what, pairs in (("linked", look[first]), ("merged", look_dropped[first])):
        print(f"look-alikes {first} {what}: " + (", ".join(" ~ ".join(p) for p in pairs) or "none"))
