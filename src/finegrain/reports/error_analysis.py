"""The error-analysis page: which classes the ensemble confuses, how each class scores, its worst mistakes.

Built by the ensemble step from `finegrain.posthoc.error_analysis.analyse_errors` (plain tables here, so this
module needs nothing above pandas). Sized for a 400-class, 33k-image run: tables are sortable, filterable and
paged (finegrain.reports.tables), and only the images of the shown pairs and mistakes have thumbnails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from finegrain.reports import gallery, html
from finegrain.reports.tables import sortable_table

PAIRS_PAGE = 15
CLASSES_PAGE = 50


def _pictures(ids: Sequence[str], thumbs: Mapping[str, bytes], paths: Mapping[str, str]) -> str:
    # Captioned with the id's last part (a Hecto id repeats its class folder); hovering gives the whole path.
    figures = [gallery.figure(thumbs.get(i), i.rsplit("/", 1)[-1], title=paths.get(i, i)) for i in ids]
    return gallery.strip(figures, 80, wrap=False)


def _pairs_table(
    pairs: pd.DataFrame, thumbs: Mapping[str, bytes], paths: Mapping[str, str], with_groups: bool
) -> str:
    rows = [
        {
            "true class": r.true,
            "predicted as": r.predicted,
            "images": int(r.count),
            "share of the true class": float(r.share_of_true),
            "same regroup group": "yes" if r.same_group else "",
            "mistaken images (worst first)": _pictures(r.examples, thumbs, paths),
            "the predicted class": _pictures(r.references, thumbs, paths),
        }
        for r in pairs.itertuples()
    ]
    columns = ["true class", "predicted as", "images", "share of the true class", "same regroup group",
               "mistaken images (worst first)", "the predicted class"]  # fmt: skip
    if not with_groups:  # a member's page: regroup has not run yet
        columns.remove("same regroup group")
    return sortable_table(rows, columns, page_size=PAIRS_PAGE, decimals=3)


def _classes_table(per_class: pd.DataFrame) -> str:
    rows = [
        {
            "class": r["class"],
            "group": int(r["group"]) if r["group"] >= 0 else "",
            "images": int(r["images"]),
            "accuracy": float(r["accuracy"]),
            "LogLoss": float(r["logloss"]),
            "mean p(true)": float(r["mean_p_true"]),
            "most often taken for": r["taken_for"],
            "times": int(r["taken_for_count"]),
        }
        for r in per_class.sort_values("logloss", ascending=False).to_dict("records")
    ]
    columns = [
        "class",
        "group",
        "images",
        "accuracy",
        "LogLoss",
        "mean p(true)",
        "most often taken for",
        "times",
    ]
    return sortable_table(rows, columns, page_size=CLASSES_PAGE)


def _worst(worst: pd.DataFrame, thumbs: Mapping[str, bytes], paths: Mapping[str, str]) -> str:
    figures = [
        gallery.figure(
            thumbs.get(r.image_id), f"{r.true} → {r.predicted}",
            note=f"p(true) {r.p_true:.3f}, LogLoss {r.logloss:.2f}", title=paths.get(r.image_id, r.image_id),
        )
        for r in worst.itertuples()
    ]  # fmt: skip
    return gallery.strip(figures, 130)


def _groups(groups: Mapping[int, Sequence[str]], per_class: pd.DataFrame) -> str:
    images_of = dict(zip(per_class["class"], per_class["images"]))
    correct_of = dict(zip(per_class["class"], per_class["accuracy"] * per_class["images"]))
    rows = []
    for g, members in groups.items():
        images = int(sum(images_of.get(c, 0) for c in members))
        correct = float(sum(correct_of.get(c, 0.0) for c in members))
        rows.append({"group": g, "classes": len(members), "images": images, "accuracy": correct / max(images, 1),
                     "members": ", ".join(members)})  # fmt: skip
    columns = ["group", "classes", "images", "accuracy", "members"]
    return sortable_table(rows, columns, page_size=CLASSES_PAGE)


def error_analysis_page(
    summary: Mapping[str, object],
    per_class: pd.DataFrame,
    pairs: pd.DataFrame,
    worst: pd.DataFrame,
    groups: Mapping[int, Sequence[str]],
    thumbs: Mapping[str, bytes],
    paths: Mapping[str, str],
    title: str = "Error analysis (ensemble, out-of-fold)",
) -> str:
    """The whole page. summary: n_images, n_classes, accuracy, log_loss, what (which predictions), pictures
    (where the thumbnails come from, or why there are none); groups: regroup's multi-class groups by number;
    thumbs/paths: by image id."""
    errors = int(round(summary["n_images"] * (1 - summary["accuracy"])))
    body = [
        html.paragraph(
            f"{summary['what']}: {summary['n_images']} images, {summary['n_classes']} classes; accuracy "
            f"{summary['accuracy']:.4f} ({errors} mistakes), LogLoss {summary['log_loss']:.5f}."
        ),
        html.paragraph(str(summary["pictures"]), "fg-note"),
        html.heading(f"Most confused pairs (top {len(pairs)})"),
        html.paragraph(
            "Images of the true class whose top prediction is the other class, beside images of that class it gets "
            "right; hover a picture for its path. Click a column heading to sort, type to filter.",
            "fg-note",
        ),
        _pairs_table(pairs, thumbs, paths, bool(groups)) if len(pairs) else html.paragraph("No mistakes."),
        html.heading("Per class (worst LogLoss first)"),
        _classes_table(per_class),
        html.heading(f"Worst-scored images (top {len(worst)} by LogLoss term)"),
        _worst(worst, thumbs, paths),
    ]
    if groups:
        what = (
            f"Regroup's {len(groups)} multi-class groups (the 'group' column above; accuracy of their images)"
        )
        body.append(html.details(what, _groups(groups, per_class)))
    return html.page(title, "".join(body))
