"""report.md of the preprocess step: what was found in the data and what was done about it (shown in the KFP UI).

A summary that stays short at 400 classes; the full page with pictures is finegrain.reports.preprocess_page.
"""

from __future__ import annotations

import pandas as pd

from finegrain.config import Config
from finegrain.data.checks import dataset_aliases
from finegrain.data.thumbnails import root_name
from finegrain.preprocess.copies import kind_counts

STATUSES = ("ok", "duplicate", "near_duplicate", "corrupt", "cross_class_conflict", "noisy")
SMALL = 40  # classes (and duplicate groups) listed in full here; beyond, the Markdown summarises
SHOWN = 30
ACTIONS_NOTE = (
    "drop: a duplicate for training (one picture kept, the others near_duplicate or duplicate); same_fold: every "
    "picture kept, in one fold with its copies (preprocess.near_duplicate_action). A pair of several kinds counts "
    "under each, and is dropped only when each kind says drop."
)
PAGE_NOTE = (
    "Pictures of every duplicate group, conflict, suggested merge and corrupt file, and the class counts as a "
    "sortable table and a histogram: report.html beside this file (the step's `page` output in the Kubeflow UI)."
)


def _table(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (no tabulate dependency)."""
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def _per_class_lines(train: pd.DataFrame) -> list[str]:
    """The per-class table up to SMALL classes; beyond, the spread and the smallest classes (all in report.html)."""
    per_class = (
        train.groupby("label")
        .agg(class_name=("class_name", "first"), images=("path", "size"), training=("fold", lambda f: int((f >= 0).sum())))
        .reset_index()
    )
    if len(per_class) <= SMALL:
        return [_table(per_class), ""]
    n = per_class["images"]
    smallest = per_class.sort_values(["images", "label"]).head(SHOWN)
    return [
        f"{len(per_class)} class folders, {n.min()} to {n.max()} images each (median {n.median():g}). The {SHOWN} "
        "smallest (every class, sortable, with a histogram: report.html):", "", _table(smallest), "",
    ]  # fmt: skip


def _dup_group_lines(manifest: pd.DataFrame) -> list[str]:
    """One line per duplicate group, the first SHOWN of them (every one, with pictures: report.html)."""
    grouped = manifest[manifest.dup_group >= 0].sort_values(["dup_group", "path"])
    if grouped.empty:
        return ["None found."]
    lines = []
    for g, rows in grouped.groupby("dup_group", sort=True):
        lines.append(f"- group {g}: " + "; ".join(f"`{r.path}` ({r.split} {r.label or ''}, {r.status})" for r in rows.itertuples()))
    if len(lines) > SHOWN:
        lines = lines[:SHOWN] + [f"- ... and {len(lines) - SHOWN} more groups (report.html shows every one)"]
    return lines


def _pair_frame(manifest: pd.DataFrame, pairs: pd.DataFrame, action: bool = False) -> pd.DataFrame:
    frame = pd.DataFrame({
        "a": [manifest.at[a, "path"] for a in pairs.a], "b": [manifest.at[b, "path"] for b in pairs.b],
        **({"rule": pairs.rule.replace("", "-"), "action": pairs.action} if action else {}),
        "similarity": pairs.similarity.round(3), "changed": pairs.changed.round(3),
    })  # fmt: skip
    return frame


def copy_counts(manifest: pd.DataFrame, pairs: pd.DataFrame, actions: dict[str, str]) -> pd.DataFrame:
    """copies.kind_counts with the exact links counted from the manifest (usable rows repeating a file's bytes):
    the table both report.md and report.html show."""
    usable = manifest[manifest["status"] != "corrupt"]
    return kind_counts(pairs, int(usable["sha256"].duplicated().sum()), actions)


def checked_note(pairs: pd.DataFrame, cfg: Config) -> str:
    """How many near-duplicate pairs were checked, confirmed and rejected, and by what rule (both reports)."""
    pp = cfg.preprocess
    confirmed = int(pairs["same"].sum()) if len(pairs) else 0
    return (
        f"Near-duplicate pairs checked ({pp.near_dup_neighbours} closest pictures each, tiny-picture correlation "
        f">= {pp.near_dup_min_correlation}): {len(pairs)}; confirmed {confirmed}; rejected as different pictures "
        f"{len(pairs) - confirmed} (a copy correlates >= {pp.confirm_min_similarity} after alignment and differs "
        f"in <= {pp.confirm_max_changed:.0%} of its blocks, or in one blob <= {pp.confirm_max_edit:.0%} of the "
        "frame: a local edit)."
    )


def _kind_lines(manifest: pd.DataFrame, pairs: pd.DataFrame, actions: dict[str, str]) -> list[str]:
    """Per kind of copy: the links confirmed and what was done (preprocess.near_duplicate_action); then each
    confirmed near-duplicate pair, the first SHOWN of them (every one, with pictures: report.html)."""
    out = ["", "### Copies by kind", "", ACTIONS_NOTE, "", _table(copy_counts(manifest, pairs, actions))]
    confirmed = pairs[pairs["same"]] if len(pairs) else pairs
    if len(confirmed):
        out += ["", f"Confirmed near-duplicate pairs ({len(confirmed)}):", ""]
        out.append(_table(_pair_frame(manifest, confirmed.head(SHOWN), action=True)))
        if len(confirmed) > SHOWN:
            out.append(f"\n... and {len(confirmed) - SHOWN} more pairs (report.html shows every one)")
    return out


def _balance_lines(balance: pd.DataFrame) -> list[str]:
    """The fold balance per class up to SMALL classes; beyond, the SHOWN least balanced (all in report.html)."""
    if len(balance) <= SMALL:
        return [_table(balance.reset_index())]
    worst = balance.sort_values("max_dev", ascending=False, kind="stable").head(SHOWN)
    return [f"The {SHOWN} least balanced of {len(balance)} classes (every class: report.html):", "",
            _table(worst.reset_index())]  # fmt: skip


def render_report(
    manifest: pd.DataFrame,
    ds,
    pairs: pd.DataFrame,
    conflicts: list[dict],
    suggestions: list[dict],
    noisy: list[dict],
    balance: pd.DataFrame,
    fold_warnings: list[str],
    cfg: Config,
) -> str:
    pp = cfg.preprocess
    train = manifest[manifest.split == "train"]
    out = [
        "# Preprocess report",
        "",
        f"Paths are relative to the dataset root. {PAGE_NOTE}",
        "",
        f"Dataset `{root_name(ds.root)}` ({ds.layout} layout): {len(train)} train and {int((manifest.split == 'test').sum())} "
        f"test images, {len(ds.classes)} classes before merges, {manifest.class_name[manifest.class_name != ''].nunique()} "
        f"after. Files skipped (not images / not listed): {len(ds.skipped)}.",
        "",
        "## Status counts",
        "",
        _table(
            pd.DataFrame(
                [{"status": s, "train": int((train.status == s).sum()),
                  "test": int(((manifest.split == "test") & (manifest.status == s)).sum())} for s in STATUSES]
            )
        ),  # fmt: skip
        "",
        f"Rows used for training (status ok, with a fold): {int((manifest.fold >= 0).sum())}.",
        "",
        "## Images per class",
        "",
    ]
    out += _per_class_lines(train)

    out += ["## Duplicate groups", ""]
    out += _dup_group_lines(manifest)
    rejected = pairs[~pairs["same"]] if len(pairs) else pairs
    out += ["", checked_note(pairs, cfg)]
    out += _kind_lines(manifest, pairs, pp.near_duplicate_action)
    if len(rejected):
        shown = rejected.sort_values("similarity", ascending=False).head(20)
        out += ["", "Closest rejected candidates (similarity: NCC once aligned; changed: fraction that differs):", ""]
        out.append(_table(_pair_frame(manifest, shown)))

    out += ["", "## Cross-class conflicts", ""]
    if not conflicts:
        out.append("None.")
    for c in conflicts:
        action = "dropped from training" if c["dropped"] else "kept (drop_cross_class_conflicts=false)"
        out.append(f"- group {c['dup_group']} ({' / '.join(c['classes'])}), {action}: "
                   + ", ".join(f"`{p}`" for p in c["paths"]))  # fmt: skip

    _, ignored = dataset_aliases(cfg.data.aliases, ds.classes)
    unused = f"; ignored, naming a class this dataset does not have: {ignored}" if ignored else ""
    out += ["", "## Class merges", "", f"Declared aliases: {dict(cfg.data.aliases) or 'none'}{unused}.", ""]
    if suggestions:
        applied = "applied" if pp.apply_suggested_merges else "not applied (preprocess.apply_suggested_merges=false)"
        out += [f"Suggested merges ({applied}):", "", _table(pd.DataFrame(suggestions))]
    else:
        out.append(f"No further pairs share >= {pp.suggest_merge_fraction:.0%} of their images.")

    out += ["", "## Noisy labels", ""]
    if not pp.noise_oof:
        out.append("Not checked (preprocess.noise_oof not set).")
    elif not noisy:
        out.append(f"None flagged by {pp.noise_method} on `{pp.noise_oof}`.")
    else:
        out += [f"{len(noisy)} flagged by {pp.noise_method} on `{pp.noise_oof}` (excluded from training):", "",
                _table(pd.DataFrame(noisy))]  # fmt: skip

    out += ["", "## Corrupt files", ""]
    bad = manifest[manifest.status == "corrupt"]
    out.append("None." if bad.empty else _table(bad[["path", "reason"]]))
    converted = manifest[(manifest.status != "corrupt") & manifest.reason.str.contains("converted|flattened|EXIF|scaled")]
    if len(converted):
        out += ["", "Usable after in-memory conversion:", "", _table(converted[["path", "reason"]])]

    out += ["", f"## Fold balance ({cfg.data.folds} folds, seed {cfg.data.seed})", ""]
    out += [f"- warning: {w}" for w in fold_warnings]
    out += ["", *_balance_lines(balance), ""]
    return "\n".join(out)
