"""Confirmed copies to groups: which are duplicates for training and which only share a fold.

    dup_group, fold_group, pairs = group_copies(len(table), edges, pairs, cfg.preprocess.near_duplicate_action)

`edges` are exact copies (same bytes, kind "exact"); `pairs` the near-duplicate candidates the check judged
(a, b, same, rule, similarity, changed). Each confirmed link gets an action from its kinds (config.copy_kinds):
`dup_group` joins the links whose action is drop (statuses.assign_statuses keeps one picture of each such group),
`fold_group` joins every link, drop and same_fold alike (folds.assign_folds keeps each in one fold), so a
copy kept for training never sits in another fold than its original. Both are -1 for a row linked to nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from finegrain.config.copy_kinds import pair_action, rule_kinds
from finegrain.preprocess.dedup.hashing import connected_groups

PAIR_COLUMNS = ["a", "b", "same", "rule", "similarity", "changed"]


def group_copies(
    n: int, edges: list[tuple[int, int]], pairs: pd.DataFrame, actions: Mapping[str, str]
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """(dup_group, fold_group, pairs with an `action` column: drop / same_fold, "" for a rejected pair)."""
    pairs = pairs.reset_index(drop=True)
    pairs["action"] = [pair_action(r, actions) if s else "" for r, s in zip(pairs["rule"], pairs["same"])]
    exact = pair_action("exact", actions)
    linked = [(int(a), int(b)) for a, b in zip(pairs["a"], pairs["b"])]
    drop = [ab for ab, act in zip(linked, pairs["action"]) if act == "drop"]
    kept = [ab for ab, act in zip(linked, pairs["action"]) if act == "same_fold"]
    dup_edges = list(edges) + drop if exact == "drop" else drop
    return connected_groups(n, dup_edges), connected_groups(n, list(edges) + drop + kept), pairs


def note_same_fold(table: pd.DataFrame, pairs: pd.DataFrame) -> None:
    """A reason on each row of a same_fold pair (in place): it stays ok, and why it shares its copy's fold
    (a test row has no fold: the note names its match only)."""
    linked = pairs[pairs["action"] == "same_fold"] if len(pairs) else pairs
    for r in linked.itertuples():
        both_train = table.at[int(r.a), "split"] == table.at[int(r.b), "split"] == "train"
        for i, j in ((int(r.a), int(r.b)), (int(r.b), int(r.a))):
            note = f"matches {table.at[j, 'path']} ({r.rule or 'near copy'})"
            if both_train:
                note += f": kept, same fold (fold group {table.at[i, 'fold_group']})"
            old = table.at[i, "reason"]
            table.at[i, "reason"] = f"{old}; {note}" if old else note


def kind_counts(pairs: pd.DataFrame, exact_links: int, actions: Mapping[str, str]) -> pd.DataFrame:
    """Per kind: confirmed links naming it (a "crop+overlay" pair counts under both) and its configured action."""
    confirmed = pairs.loc[pairs["same"], "rule"] if len(pairs) else pd.Series([], dtype=object)
    counts = {kind: 0 for kind in actions}
    counts["exact"] = exact_links
    for rule in confirmed:
        for kind in set(rule_kinds(rule)):
            counts[kind] = counts.get(kind, 0) + 1
    return pd.DataFrame(
        [{"kind": k, "pairs confirmed": n, "action": actions.get(k, "")} for k, n in counts.items()]
    )
