"""The kinds of copy the near-duplicate check names, and what each means for training by default.

A confirmed near-duplicate pair's `rule` lists its kinds joined by "+" ("crop+overlay"); two files with the same
bytes are kind "exact". Per kind, `preprocess.near_duplicate_action` says what a confirmed copy is:
  drop       a duplicate for training: one representative kept, the others `duplicate`/`near_duplicate`, fold -1
  same_fold  a different picture for training (every image kept, status ok), but in the fold of its copies,
             so validation never scores a picture training has seen in another form
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

COPY_KINDS = ("exact", "reencode", "resize", "crop", "flip", "rotation", "photometric", "letterbox", "exif",
              "overlay")  # fmt: skip
Action = Literal["drop", "same_fold"]

# overlay: the pair differs only in a small region. That may be a watermark on a copy, but as well a burst or
# video frame, or the same car with another decal: another picture. Keeping both costs nothing, and the shared
# fold stops the leak either way. Every other kind changes the whole picture the same way: a copy.
DEFAULT_ACTIONS: dict[str, str] = {kind: "same_fold" if kind == "overlay" else "drop" for kind in COPY_KINDS}


def complete_actions(given: Mapping[str, str]) -> dict[str, str]:
    """`given` over the defaults, in COPY_KINDS order: a config names only the kinds it changes.

    ValueError naming the allowed kinds when `given` names another."""
    unknown = sorted(set(given) - set(COPY_KINDS))
    if unknown:
        raise ValueError(
            f"unknown kind(s) of copy {', '.join(map(repr, unknown))}; the kinds are {', '.join(COPY_KINDS)} "
            "(each drop or same_fold)"
        )
    return {kind: given.get(kind, DEFAULT_ACTIONS[kind]) for kind in COPY_KINDS}


def rule_kinds(rule: str) -> list[str]:
    """The kinds a pair's rule names: "crop+overlay" -> ["crop", "overlay"]; "" -> []."""
    return [k.strip() for k in str(rule or "").split("+") if k.strip()]


def pair_action(rule: str, actions: Mapping[str, str]) -> str:
    """drop when every kind in `rule` says drop, else same_fold (one kind that may be another picture is enough
    to keep both). A rule naming no kind is drop: what every confirmed pair was before kinds were told apart."""
    kinds = rule_kinds(rule)
    unknown = [k for k in kinds if k not in COPY_KINDS]
    if unknown:  # the check and this vocabulary disagree: a bug, not a data problem
        raise ValueError(
            f"near-duplicate rule {rule!r} names {unknown}, not a kind of copy ({', '.join(COPY_KINDS)})"
        )
    return "drop" if all(actions.get(k, DEFAULT_ACTIONS[k]) == "drop" for k in kinds) else "same_fold"
