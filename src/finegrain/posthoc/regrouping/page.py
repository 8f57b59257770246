"""What people look at after regrouping: the t-SNE scatter coloured by group and the HTML page around it.

Every multi-class group gets a colour none of its neighbours on the map has (regrouping.colours) and its
number drawn at its centroid; the page's table of groups is the legend (colour, number, class names), and an
SVG map of the class centroids names each class on hover. Singletons are light grey throughout.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from finegrain.posthoc.regrouping.colours import PALETTE, SINGLETON, centroids, group_colours
from finegrain.posthoc.regrouping.regrouper import Regrouper
from finegrain.reports import html, svg
from finegrain.reports.markup import Markup
from finegrain.reports.tables import sortable_table


def hangul_font() -> str | None:
    """Path of an installed font that has Hangul glyphs, or None (then labels fall back to class indices)."""
    from matplotlib import font_manager, ft2font

    for path in font_manager.findSystemFonts():
        try:
            if ord("가") in ft2font.FT2Font(path).get_charmap():
                return path
        except (RuntimeError, OSError, ValueError):
            continue
    return None


def plot_groups(rg: Regrouper, out_png: str, label_top: int = 10) -> dict[str, Any]:
    """Scatter the t-SNE map coloured by group; label the most-confused classes. Returns how labels were drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    if rg.embedding_2d_ is None:
        raise ValueError("Regrouper was fitted with compute_tsne=False: nothing to plot")
    xy, y = rg.embedding_2d_, rg.tsne_labels_
    group = rg.class_to_group_[y]
    sizes = np.array([len(rg.groups_[g]) for g in group])
    font_path = hangul_font()
    names = [str(c) for c in rg.classes_]
    use_names = font_path is not None or all(n.isascii() for n in names)
    fig, ax = plt.subplots(figsize=(12, 10), dpi=100)
    single = sizes == 1
    dot = float(np.clip(20_000 / max(len(xy), 1), 1.0, 12.0))  # visible at 500 points, no blob at 30,000
    # Singletons in grey so the multi-class groups (the interesting part) stand out.
    ax.scatter(xy[single, 0], xy[single, 1], s=dot, c=SINGLETON, linewidths=0, rasterized=True)
    colour_of = map_colours(rg)
    colours = [colour_of[g] for g in group[~single]]
    ax.scatter(xy[~single, 0], xy[~single, 1], s=dot * 1.5, c=colours, linewidths=0, rasterized=True)
    for g, (cx, cy) in group_labels(rg):  # each class of a group carries the group's number, as in the table
        ax.annotate(str(g), (cx, cy), xytext=(-4, -4), textcoords="offset points", fontsize=6, ha="right",
                    va="top", color="#333")  # fmt: skip
    labelled = rg.most_confused_classes(label_top)
    prop = font_manager.FontProperties(fname=font_path) if font_path else None
    for k, c in enumerate(labelled):
        rows = y == c
        if not rows.any():
            continue
        cx, cy = np.median(xy[rows], axis=0)
        text = names[c] if use_names else f"#{c}"
        # The most-confused classes come in pairs sitting on each other: stagger labels so both stay legible.
        ax.annotate(
            text,
            (cx, cy),
            xytext=(6, 6 - 12 * (k % 2)),
            textcoords="offset points",
            fontsize=8,
            fontproperties=prop,
            bbox={"fc": "white", "alpha": 0.7, "lw": 0},
        )
    n_multi = sum(len(g) > 1 for g in rg.groups_)
    ax.set_title(f"t-SNE of out-of-fold embeddings: {rg.n_classes_} classes, {n_multi} multi-class groups")
    ax.set_xticks([])
    ax.set_yticks([])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(out_png, bbox_inches="tight")
    plt.close(fig)
    glyphs = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    if glyphs:  # labels are chosen so this cannot happen; if it does, fail rather than ship boxes
        raise RuntimeError(f"{out_png}: glyphs missing from the plot font: {glyphs[0]}")
    return {"font": font_path, "labels": "names" if use_names else "indices", "labelled": labelled}


def map_colours(rg: Regrouper) -> dict[int, str]:
    """{group: colour} of the multi-class groups, neighbours on the t-SNE map in different colours."""
    multi = [g for g, members in enumerate(rg.groups_) if len(members) > 1]
    if rg.embedding_2d_ is None:
        return {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(multi)}
    class_xy = centroids(rg.embedding_2d_, rg.tsne_labels_, rg.n_classes_)
    centres = np.array([np.nanmean(class_xy[rg.groups_[g]], axis=0) for g in multi]).reshape(-1, 2)
    return group_colours(centres, multi)


def group_labels(rg: Regrouper) -> list[tuple[int, tuple[float, float]]]:
    """(group, class centroid) of every class in a multi-class group that has points on the map."""
    class_xy = centroids(rg.embedding_2d_, rg.tsne_labels_, rg.n_classes_)
    return [
        (int(rg.class_to_group_[c]), (float(class_xy[c, 0]), float(class_xy[c, 1])))
        for c in range(rg.n_classes_)
        if len(rg.groups_[rg.class_to_group_[c]]) > 1 and not np.isnan(class_xy[c, 0])
    ]


def _class_map(rg: Regrouper, colour_of: dict[int, str]) -> str:
    """SVG of the class centroids on the t-SNE map, coloured by group; hover names the class and its group."""
    class_xy = centroids(rg.embedding_2d_, rg.tsne_labels_, rg.n_classes_)
    counts = np.bincount(rg.tsne_labels_, minlength=rg.n_classes_)
    shown = np.flatnonzero(~np.isnan(class_xy[:, 0]))
    group = rg.class_to_group_
    alone = {c: "" if group[c] in colour_of else " (alone)" for c in shown}
    titles = [f"{rg.classes_[c]}: group {group[c]}{alone[c]}, {counts[c]} images" for c in shown]
    colours = [colour_of.get(int(group[c]), SINGLETON) for c in shown]
    radius = 2.5 + 3.0 * np.sqrt(counts[shown] / max(counts.max(), 1))
    labels = [(str(g), xy) for g, xy in group_labels(rg)]
    return svg.scatter(class_xy[shown], colours, titles, radius, labels=labels, height=600)


def _swatch(colour: str) -> Markup:
    return Markup(f"<span style='display:inline-block;width:14px;height:14px;background:{colour}'></span>")


def groups_html(rg: Regrouper, png_path: str, title: str = "finegrain regroup") -> str:
    """A self-contained HTML page for the KFP UI: the PNG inlined, the class map (hover: class names) and the
    table of multi-class groups, which is the plot's legend (colour, number drawn at the centroid, classes)."""
    colour_of = map_colours(rg)
    columns = ["colour", "group", "classes", "within-group confusion", "members"]
    rows = []
    for gid, (names, conf) in enumerate(zip(rg.group_names_, rg.within_group_confusion())):
        if len(names) > 1:
            values = (
                _swatch(colour_of[gid]),
                gid,
                len(names),
                f"{conf:.4f}",
                ", ".join(str(n) for n in names),
            )
            rows.append(dict(zip(columns, values)))
    n_single = sum(len(g) == 1 for g in rg.groups_)
    body = [
        html.paragraph(f"{len(rows)} multi-class groups, {n_single} singleton classes."),
        html.paragraph(
            "Each multi-class group has its own colour (no two neighbouring groups share one), and its number is "
            "written beside each of its classes; the table below is the legend. Singleton classes are light grey.",
            "fg-note",
        ),
        html.png_img(png_path, "t-SNE"),
    ]
    if rg.embedding_2d_ is not None:
        body += [
            html.heading("Class centroids (hover a dot for the class; size: number of images)"),
            _class_map(rg, colour_of),
        ]
    body += [
        html.heading("Groups (type a class name to find its group)"),
        sortable_table(rows, columns, page_size=50),
    ]
    return html.page(title, "".join(body))
