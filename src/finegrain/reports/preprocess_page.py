"""The preprocess step's full page (`report.html`): what was found in the data, with the pictures it is about.

Its Markdown summary (`report.md`, finegrain.preprocess.report) is what the KFP UI shows first; this page
beside it shows every duplicate group, confirmed near-duplicate pair (its kinds of copy, dropped or kept in one
fold), cross-class conflict, suggested merge, noisy label and corrupt file with thumbnails, and the class counts
as a histogram and a sortable table, readable at 400 classes. Paths are relative to the dataset root
(finegrain.preprocess.report_view); pictures come keyed by those paths.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from finegrain.reports import gallery, html, svg
from finegrain.reports.tables import sortable_table

STATUSES = ("ok", "duplicate", "near_duplicate", "corrupt", "cross_class_conflict", "noisy")
GROUPS_PAGE = 20
CLASSES_PAGE = 50


def _pictures(rows: pd.DataFrame, thumbs: Mapping[str, bytes], with_status: bool = True) -> str:
    """Thumbnails captioned with the file name (its class and status below); hover: the path and the reason."""
    figures = [
        gallery.figure(
            thumbs.get(r.path), r.path.rsplit("/", 1)[-1], note=_status_note(r) if with_status else "",
            missing="not drawn", bad=r.status in ("cross_class_conflict", "corrupt", "noisy"),
            title=f"{r.path}: {r.reason}" if r.reason else r.path,
        )
        for r in rows.itertuples()
    ]  # fmt: skip
    return gallery.strip(figures, 100)


def _status_note(r) -> str:
    where = r.label if r.split == "train" else "test"
    return f"{where}, {r.status}"


def _classes(train: pd.DataFrame) -> str:
    counts = train.groupby("class_name").agg(
        images=("path", "size"), training=("fold", lambda f: int((f >= 0).sum())),
        duplicates=("status", lambda s: int(s.isin(["duplicate", "near_duplicate"]).sum())),
        conflicts=("status", lambda s: int((s == "cross_class_conflict").sum())),
        noisy=("status", lambda s: int((s == "noisy").sum())), corrupt=("status", lambda s: int((s == "corrupt").sum())),
        names=("label", lambda s: ", ".join(sorted(set(s)))),
    )  # fmt: skip
    rows = [{"class": c, **r, "folder names": r["names"]} for c, r in counts.sort_values("images").iterrows()]
    columns = ["class", "images", "training", "duplicates", "conflicts", "noisy", "corrupt", "folder names"]
    spread = counts["images"]
    return "".join([
        html.paragraph(f"{len(counts)} classes: {spread.min()} to {spread.max()} images each (median "
                       f"{spread.median():g}). Hover a bar for its count; the table starts with the smallest classes."),
        svg.histogram(spread.to_numpy(), "training-set images per class"),
        sortable_table(rows, columns, page_size=CLASSES_PAGE),
    ])  # fmt: skip


def _groups(manifest: pd.DataFrame, thumbs: Mapping[str, bytes]) -> str:
    grouped = manifest[manifest["dup_group"] >= 0].sort_values(["dup_group", "path"])
    if grouped.empty:
        return html.paragraph("None found.")
    rows = []
    for g, members in grouped.groupby("dup_group", sort=True):
        classes = sorted({c for c in members["class_name"] if c})
        rows.append({"group": int(g), "images": len(members), "classes": ", ".join(classes) or "(test only)",
                     "pictures (hover: why)": _pictures(members, thumbs)})  # fmt: skip
    return sortable_table(
        rows, ["group", "images", "classes", "pictures (hover: why)"], page_size=GROUPS_PAGE
    )


def _copies(
    manifest: pd.DataFrame, pairs: pd.DataFrame, kinds: pd.DataFrame, note: str, thumbs: Mapping[str, bytes]
) -> str:
    """Per kind of copy: links confirmed and the configured action; then every confirmed near-duplicate pair
    with its pictures, the kinds that confirmed it and whether it was dropped or kept in one fold."""
    body = [html.heading("Copies by kind", 4), html.paragraph(note, "fg-note"),
            html.table(kinds.to_dict("records"), list(kinds.columns))]  # fmt: skip
    confirmed = pairs[pairs["same"]] if len(pairs) else pairs
    if len(confirmed):
        rows = [
            {"pair (hover: why)": _pictures(manifest.loc[[int(r.a), int(r.b)]], thumbs), "rule": r.rule or "-",
             "action": r.action, "similarity": float(r.similarity), "changed": float(r.changed)}
            for r in confirmed.itertuples()
        ]  # fmt: skip
        columns = ["pair (hover: why)", "rule", "action", "similarity", "changed"]
        body.append(html.details(f"The {len(rows)} confirmed near-duplicate pairs",
                                 sortable_table(rows, columns, page_size=GROUPS_PAGE, decimals=3)))  # fmt: skip
    return "".join(body)


def _rejected(manifest: pd.DataFrame, pairs: pd.DataFrame, thumbs: Mapping[str, bytes], shown: int) -> str:
    rejected = pairs[~pairs["same"]] if len(pairs) else pairs
    if not len(rejected):
        return ""
    rows = [
        {"pair (hover: why)": _pictures(manifest.loc[[int(r.a), int(r.b)]], thumbs, False),
         "similarity": float(r.similarity), "changed": float(r.changed)}
        for r in rejected.sort_values("similarity", ascending=False).head(shown).itertuples()
    ]  # fmt: skip
    body = sortable_table(rows, ["pair (hover: why)", "similarity", "changed"], decimals=3)
    return html.details(f"The {len(rows)} closest candidates rejected as different pictures", body)


def _conflicts(manifest: pd.DataFrame, conflicts: Sequence[dict], thumbs: Mapping[str, bytes]) -> str:
    if not conflicts:
        return html.paragraph("None.")
    by_path = manifest.set_index("path", drop=False)
    rows = [
        {"group": c["dup_group"], "classes": " / ".join(c["classes"]),
         "action": "dropped from training" if c["dropped"] else "kept (drop_cross_class_conflicts=false)",
         "pictures": _pictures(by_path.loc[list(c["paths"])], thumbs)}
        for c in conflicts
    ]  # fmt: skip
    return sortable_table(rows, ["group", "classes", "action", "pictures"], page_size=GROUPS_PAGE)


def _merges(
    manifest: pd.DataFrame, suggestions: Sequence[dict], applied: bool, thumbs: Mapping[str, bytes]
) -> str:
    if not suggestions:
        return ""
    grouped = manifest[(manifest["dup_group"] >= 0) & (manifest["split"] == "train")]
    classes_of = grouped.groupby("dup_group")["class_name"].agg(set)
    rows = []
    for s in suggestions:
        pair = {s["alias"], s["canonical"]}
        shared = [g for g, names in classes_of.items() if pair <= names][
            :3
        ]  # three pictures both classes hold
        examples = grouped[grouped["dup_group"].isin(shared) & grouped["class_name"].isin(pair)]
        rows.append({"alias": s["alias"], "canonical": s["canonical"], "shared": s["shared"],
                     "alias images": s["alias_images"], "fraction": s["fraction"],
                     "shared pictures": _pictures(examples, thumbs)})  # fmt: skip
    columns = ["alias", "canonical", "shared", "alias images", "fraction", "shared pictures"]
    what = "applied" if applied else "not applied (preprocess.apply_suggested_merges=false)"
    return html.paragraph(f"Suggested merges ({what}):") + sortable_table(rows, columns)


def _noisy(manifest: pd.DataFrame, noisy: Sequence[dict], thumbs: Mapping[str, bytes]) -> str:
    by_path = manifest.set_index("path", drop=False)
    rows = [{**n, "picture": _pictures(by_path.loc[[n["path"]]], thumbs, False)} for n in noisy]
    return sortable_table(rows, ["path", "given", "predicted", "score", "picture"], page_size=GROUPS_PAGE)


def _corrupt(manifest: pd.DataFrame, thumbs: Mapping[str, bytes]) -> str:
    bad = manifest[manifest["status"] == "corrupt"]
    if bad.empty:
        return html.paragraph("None.")
    figures = [
        gallery.figure(thumbs.get(r.path), r.path, note=r.reason, missing=r.reason, bad=True)
        for r in bad.itertuples()
    ]
    text = "What decodes of each file is shown (a truncated JPEG shows its top); the reason is in red."
    return html.paragraph(text, "fg-note") + gallery.strip(figures, 160)


def preprocess_page(
    info: Mapping[str, object],
    manifest: pd.DataFrame,
    pairs: pd.DataFrame,
    conflicts: Sequence[dict],
    suggestions: Sequence[dict],
    noisy: Sequence[dict],
    balance: pd.DataFrame,
    fold_warnings: Sequence[str],
    thumbs: Mapping[str, bytes],
) -> str:
    """The page. info: summary (the report's first paragraph), candidates (how near duplicates were judged),
    kinds (per kind of copy: kind, pairs confirmed, action) and actions_note (what the actions mean), aliases,
    merges_applied, noise (what the noisy-label check did), folds; paths relative to the root. pairs: the judged
    candidates (a, b, same, rule, action, similarity, changed)."""
    train = manifest[manifest["split"] == "train"]
    test = manifest[manifest["split"] == "test"]
    counts = [{"status": s, "train": int((train["status"] == s).sum()), "test": int((test["status"] == s).sum())}
              for s in STATUSES]  # fmt: skip
    converted = manifest[
        (manifest["status"] != "corrupt") & manifest["reason"].str.contains("converted|flattened|EXIF|scaled")
    ]
    body = [
        html.paragraph(str(info["summary"])), html.table(counts, ["status", "train", "test"]),
        html.heading("Images per class"), _classes(train),
        html.heading(f"Duplicate groups ({manifest.loc[manifest['dup_group'] >= 0, 'dup_group'].nunique()})"),
        html.paragraph(str(info["candidates"]), "fg-note"), _groups(manifest, thumbs),
        _copies(manifest, pairs, info["kinds"], str(info["actions_note"]), thumbs),
        _rejected(manifest, pairs, thumbs, int(info.get("rejected_shown", 20))),
        html.heading(f"Cross-class conflicts ({len(conflicts)})"), _conflicts(manifest, conflicts, thumbs),
        html.heading("Class merges"), html.paragraph(f"Declared aliases: {info['aliases']}."),
        _merges(manifest, suggestions, bool(info["merges_applied"]), thumbs),
        html.heading(f"Noisy labels ({len(noisy)})"), html.paragraph(str(info["noise"])),
        _noisy(manifest, noisy, thumbs) if noisy else "",
        html.heading(f"Corrupt files ({int((manifest['status'] == 'corrupt').sum())})"), _corrupt(manifest, thumbs),
    ]  # fmt: skip
    if len(converted):
        listing = html.table(converted[["path", "reason"]].to_dict("records"), ["path", "reason"])
        body.append(html.details(f"{len(converted)} files usable after in-memory conversion", listing))
    body += [html.heading(f"Fold balance ({info['folds']})")]
    body += [html.paragraph(f"warning: {w}", "fg-bad") for w in fold_warnings]
    frame = balance.reset_index()
    frame.columns = [str(c) for c in frame.columns]
    body.append(
        sortable_table(frame.to_dict("records"), list(frame.columns), page_size=CLASSES_PAGE, decimals=2)
    )
    return html.page("Preprocess report", "".join(body))
