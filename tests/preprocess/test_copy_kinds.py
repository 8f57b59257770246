"""Kinds of copy: the config option (defaults, overrides, errors), the groups it makes (dup_group for the drop
kinds, fold_group for every link), the statuses (same_fold copies stay ok) and the folds (a fold group in one fold).

Pairs tables are built by hand in the columns the pixel check gives (a, b, same, rule, similarity, changed).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from finegrain.config import Config, ConfigError, config_from_dict, config_to_text, load_config
from finegrain.config.copy_kinds import COPY_KINDS, DEFAULT_ACTIONS, pair_action
from finegrain.preprocess.copies import PAIR_COLUMNS, group_copies, kind_counts, note_same_fold
from finegrain.preprocess.folds import assign_folds
from finegrain.preprocess.statuses import assign_statuses

ACTION = "preprocess.near_duplicate_action"


def test_default_drops_every_kind_but_overlay() -> None:
    actions = Config().preprocess.near_duplicate_action
    assert list(actions) == list(COPY_KINDS) and "exact" in actions
    assert actions == {**{k: "drop" for k in COPY_KINDS}, "overlay": "same_fold"} == DEFAULT_ACTIONS


def test_an_override_changes_one_kind_and_the_others_keep_their_default(tmp_path: Path) -> None:
    cfg = load_config(None, [f"{ACTION}.overlay=drop"])
    assert set(cfg.preprocess.near_duplicate_action.values()) == {"drop"}
    cfg = load_config(None, [f"{ACTION}={{crop: same_fold}}"])  # a mapping as one YAML value
    assert cfg.preprocess.near_duplicate_action == {**DEFAULT_ACTIONS, "crop": "same_fold"}
    path = tmp_path / "cfg.yaml"
    path.write_text("preprocess:\n  near_duplicate_action:\n    flip: same_fold\n", encoding="utf-8")
    cfg = load_config(path, [f"{ACTION}.overlay=drop"])  # the file's kind and the override's, both
    assert cfg.preprocess.near_duplicate_action == {**DEFAULT_ACTIONS, "flip": "same_fold", "overlay": "drop"}
    cfg.preprocess.near_duplicate_action = {"exif": "same_fold"}  # assignment validates and completes too
    assert cfg.preprocess.near_duplicate_action == {**DEFAULT_ACTIONS, "exif": "same_fold"}


def test_the_resolved_config_round_trips_with_every_kind() -> None:
    cfg = load_config(None, [f"{ACTION}.crop=same_fold"])
    again = config_from_dict(json.loads(config_to_text(cfg)))  # how a pipeline task gets its config
    assert again.preprocess.near_duplicate_action == cfg.preprocess.near_duplicate_action
    assert "crop: same_fold" in cfg.to_yaml() and "overlay: same_fold" in cfg.to_yaml()


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        (f"{ACTION}.watermark=drop", [f"{ACTION}:", "'watermark'", ", ".join(COPY_KINDS)]),
        (f"{ACTION}.crop=keep", [f"{ACTION}.crop:", "'drop' or 'same_fold'"]),
        (f"{ACTION}=drop", [f"{ACTION}:", "dictionary"]),
        (f"{ACTION}.overlay.x=drop", [f"{ACTION}.overlay: is a value"]),
    ],
)
def test_a_wrong_kind_or_action_is_an_error_naming_the_key(override: str, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"{ACTION}.overlay=drop", override])
    for needle in needles:
        assert needle in str(err.value), str(err.value)


@pytest.mark.parametrize(
    ("rule", "overlay", "expected"),
    [
        ("crop", "same_fold", "drop"),
        ("overlay", "same_fold", "same_fold"),
        ("crop+overlay", "same_fold", "same_fold"),  # one kind that may be another picture keeps both
        ("crop+overlay", "drop", "drop"),
        ("resize+photometric", "same_fold", "drop"),
        ("", "same_fold", "drop"),  # a confirmed pair that names no kind: as before kinds were told apart
    ],
)
def test_a_pair_is_dropped_only_when_each_kind_says_drop(rule: str, overlay: str, expected: str) -> None:
    assert pair_action(rule, {**DEFAULT_ACTIONS, "overlay": overlay}) == expected


def test_a_rule_outside_the_vocabulary_is_a_bug_not_a_silent_default() -> None:
    with pytest.raises(ValueError, match="'watermark'"):
        pair_action("crop+watermark", DEFAULT_ACTIONS)


def _pairs(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


# rows 0-1 same bytes; 1-2 a crop; 3-4 a watermark-like overlay; 4-5 crop+overlay; 6-7 rejected
LINKS = _pairs([(1, 2, True, "crop", 0.97, 0.0), (3, 4, True, "overlay", 0.95, 0.04),
                (4, 5, True, "crop+overlay", 0.93, 0.03), (6, 7, False, "", 0.61, 0.4)])  # fmt: skip


def test_drop_links_make_dup_groups_and_every_link_makes_fold_groups() -> None:
    dup, fold, pairs = group_copies(9, [(0, 1)], LINKS, DEFAULT_ACTIONS)
    assert dup.tolist() == [0, 0, 0, -1, -1, -1, -1, -1, -1]
    assert fold.tolist() == [0, 0, 0, 1, 1, 1, -1, -1, -1]
    assert pairs["action"].tolist() == ["drop", "same_fold", "same_fold", ""]
    dup, fold, _ = group_copies(9, [(0, 1)], LINKS, {**DEFAULT_ACTIONS, "overlay": "drop"})
    assert dup.tolist() == fold.tolist() == [0, 0, 0, 1, 1, 1, -1, -1, -1]
    dup, fold, _ = group_copies(9, [(0, 1)], LINKS, {**DEFAULT_ACTIONS, "exact": "same_fold"})
    assert dup.tolist() == [-1, 0, 0, -1, -1, -1, -1, -1, -1] and fold.tolist()[:3] == [0, 0, 0]


def test_a_mixed_component_keeps_its_drop_part_as_a_dup_group() -> None:
    # 0-1 overlay (same_fold) and 1-2 resize (drop): one fold group of three, a dup group of 1 and 2 only.
    links = _pairs([(0, 1, True, "overlay", 0.9, 0.05), (1, 2, True, "resize", 0.99, 0.0)])
    dup, fold, _ = group_copies(3, [], links, DEFAULT_ACTIONS)
    assert dup.tolist() == [-1, 0, 0] and fold.tolist() == [0, 0, 0]


def test_kind_counts_count_a_pair_under_each_of_its_kinds() -> None:
    counts = kind_counts(LINKS, exact_links=1, actions=DEFAULT_ACTIONS).set_index("kind")
    assert list(counts.index) == list(COPY_KINDS)
    expected = {**{k: 0 for k in COPY_KINDS}, "exact": 1, "crop": 2, "overlay": 2}
    assert counts["pairs confirmed"].to_dict() == expected
    assert counts.loc["overlay", "action"] == "same_fold" and counts.loc["crop", "action"] == "drop"


def _table(n: int) -> pd.DataFrame:
    return pd.DataFrame({
        "path": [f"train/a/{i}.jpg" for i in range(n)], "split": "train", "label": "a", "class_name": "a",
        "sha256": [f"sha{i}" for i in range(n)], "width": 100, "height": 80, "nbytes": [1000 + i for i in range(n)],
        "status": "ok", "reason": "",
    })  # fmt: skip


def test_same_fold_copies_stay_ok_with_a_reason_and_drop_copies_are_demoted() -> None:
    table = _table(9)
    table.loc[1, "sha256"] = table.loc[0, "sha256"]
    table.loc[0, "width"] = 200  # the larger picture is the one kept
    table["dup_group"], table["fold_group"], pairs = group_copies(9, [(0, 1)], LINKS, DEFAULT_ACTIONS)
    assign_statuses(table, drop_conflicts=True)
    note_same_fold(table, pairs)
    assert table["status"].tolist() == ["ok", "duplicate", "near_duplicate"] + ["ok"] * 6
    assert "near copy of train/a/0.jpg" in table.at[2, "reason"]
    assert "matches train/a/4.jpg (overlay): kept, same fold (fold group 1)" in table.at[3, "reason"]
    assert "train/a/3.jpg (overlay)" in table.at[4, "reason"]
    assert "train/a/5.jpg (crop+overlay)" in table.at[4, "reason"]
    assert table.at[6, "reason"] == table.at[7, "reason"] == ""  # a rejected pair is nothing


def test_a_test_row_in_a_same_fold_pair_is_noted_without_a_fold() -> None:
    table = _table(2)
    table.loc[1, ["split", "label", "class_name", "path"]] = ["test", "", "", "test/t0.jpg"]
    links = _pairs([(0, 1, True, "overlay", 0.9, 0.05)])
    table["dup_group"], table["fold_group"], pairs = group_copies(2, [], links, DEFAULT_ACTIONS)
    assign_statuses(table, drop_conflicts=True)
    note_same_fold(table, pairs)
    assert table["reason"].tolist() == ["matches test/t0.jpg (overlay)", "matches train/a/0.jpg (overlay)"]


def test_same_fold_pairs_across_classes_are_no_conflict() -> None:
    table = _table(2)
    table.loc[1, ["label", "class_name"]] = "b"
    links = _pairs([(0, 1, True, "overlay", 0.9, 0.05)])
    table["dup_group"], table["fold_group"], pairs = group_copies(2, [], links, DEFAULT_ACTIONS)
    assert assign_statuses(table, drop_conflicts=True) == [] and set(table["status"]) == {"ok"}


def test_folds_keep_each_fold_group_together() -> None:
    rng = np.random.default_rng(0)
    n = 200
    labels = [f"c{int(c)}" for c in rng.integers(0, 4, n)]
    rules = ["overlay", "crop+overlay"]
    links = _pairs([(2 * k, 2 * k + 1, True, rules[k % 2], 0.9, 0.05) for k in range(30)])
    _, fold_group, _ = group_copies(n, [], links, DEFAULT_ACTIONS)
    folds, _ = assign_folds(labels, fold_group.tolist(), n_folds=5, seed=1)
    assert all(folds[2 * k] == folds[2 * k + 1] for k in range(30))
    ungrouped, _ = assign_folds(labels, [-1] * n, n_folds=5, seed=1)
    assert any(ungrouped[2 * k] != ungrouped[2 * k + 1] for k in range(30))  # without them, pairs would split
