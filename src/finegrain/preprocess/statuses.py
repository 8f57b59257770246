"""Turn duplicate groups into manifest statuses, and spot class pairs that look like one class under two names.

    suggestions = suggest_merges(table, fraction=0.5)        # before statuses: counts use every usable image
    conflicts = assign_statuses(table, drop_conflicts=True)   # sets status/reason in place

Within a group whose training rows all carry one class (after alias merges) one representative stays `ok` -- the
largest picture (most likely the original, not a downscaled or cropped copy), then the largest file, then the first in manifest order --
and the others become `duplicate` (same bytes as the representative) or `near_duplicate`. A group spanning
classes is a `cross_class_conflict`: label noise, so by default none of its rows trains. Test rows are never
demoted (the submission needs them); a test row that copies a training picture gets a note in `reason`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import combinations

import pandas as pd


def _append(table: pd.DataFrame, i: int, note: str) -> None:
    old = table.at[i, "reason"]
    table.at[i, "reason"] = f"{old}; {note}" if old else note


def _groups(table: pd.DataFrame) -> dict[int, list[int]]:
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(table["dup_group"].tolist()):
        if g >= 0 and table.at[i, "status"] != "corrupt":
            members[int(g)].append(i)
    return members


def suggest_merges(table: pd.DataFrame, fraction: float) -> list[dict]:
    """Class pairs where at least `fraction` of the smaller class's images also appear in the other class."""
    train = (table["split"] == "train") & (table["status"] != "corrupt")
    size = Counter(table.loc[train, "class_name"])
    shared: dict[tuple[str, str], set[int]] = defaultdict(set)  # (a, b) -> rows of a that also appear under b
    for rows in _groups(table).values():
        by_class: dict[str, list[int]] = defaultdict(list)
        for i in rows:
            if table.at[i, "split"] == "train":
                by_class[table.at[i, "class_name"]].append(i)
        for a, b in combinations(sorted(by_class), 2):
            shared[(a, b)].update(by_class[a])
            shared[(b, a)].update(by_class[b])
    out = []
    for a, b in sorted({tuple(sorted(k)) for k in shared}):
        # The smaller class is the alias; on a tie the name that sorts first stays canonical.
        small, big = (b, a) if (size[b], a) <= (size[a], b) else (a, b)
        n = len(shared[(small, big)])
        if size[small] and n / size[small] >= fraction:
            out.append({"alias": small, "canonical": big, "shared": n, "alias_images": size[small],
                        "fraction": round(n / size[small], 4)})  # fmt: skip
    return out


def _representative(table: pd.DataFrame, rows: list[int]) -> int:
    # Larger file at equal size: the less compressed one (a re-encode at lower quality is the copy).
    return min(rows, key=lambda i: (-int(table.at[i, "width"]) * int(table.at[i, "height"]), -int(table.at[i, "nbytes"]), i))


def assign_statuses(table: pd.DataFrame, drop_conflicts: bool) -> list[dict]:
    """Set status/reason of every grouped row in place; returns the cross-class conflicts for the report."""
    conflicts = []
    for group, rows in sorted(_groups(table).items()):
        train = [i for i in rows if table.at[i, "split"] == "train"]
        test = [i for i in rows if table.at[i, "split"] == "test"]
        for i in test:
            others = [table.at[j, "path"] for j in rows if j != i]
            _append(table, i, f"same picture as {', '.join(others)}")
        by_class: dict[str, list[int]] = defaultdict(list)
        for i in train:
            by_class[table.at[i, "class_name"]].append(i)
        if len(by_class) > 1:
            conflicts.append({"dup_group": group, "classes": sorted(by_class),
                              "paths": [table.at[i, "path"] for i in train], "dropped": drop_conflicts})  # fmt: skip
            if drop_conflicts:
                for i in train:
                    labels = sorted({table.at[j, "label"] for j in train})
                    table.at[i, "status"] = "cross_class_conflict"
                    _append(table, i, f"same picture labelled {' / '.join(labels)} (group {group}); not trained on")
                continue
        for _cls, members in sorted(by_class.items()):
            rep = _representative(table, members)
            if len(by_class) > 1:
                _append(table, rep, f"cross-class conflict kept (group {group}: {' / '.join(sorted(by_class))})")
            for i in members:
                if i == rep:
                    continue
                exact = table.at[i, "sha256"] == table.at[rep, "sha256"]
                table.at[i, "status"] = "duplicate" if exact else "near_duplicate"
                alias = table.at[i, "label"] != table.at[rep, "label"]
                kind = "alias copy" if alias else ("exact copy" if exact else "near copy")
                _append(table, i, f"{kind} of {table.at[rep, 'path']} (group {group})")
    return conflicts
