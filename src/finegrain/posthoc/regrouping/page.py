"""What people look at after regrouping: the t-SNE scatter coloured by group and the HTML page around it."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from finegrain.posthoc.regrouping.regrouper import Regrouper
from finegrain.reports import html


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
    ax.scatter(xy[single, 0], xy[single, 1], s=dot, c="lightgrey", linewidths=0, rasterized=True)
    # tab20 without its two greys, which would read as singletons.
    palette = np.array([plt.get_cmap("tab20")(i) for i in range(20) if i not in (14, 15)])
    colours = palette[group[~single] % len(palette)]
    ax.scatter(xy[~single, 0], xy[~single, 1], s=dot * 1.5, c=colours, linewidths=0, rasterized=True)
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


def groups_html(rg: Regrouper, png_path: str, title: str = "finegrain regroup") -> str:
    """A self-contained HTML page (the PNG inlined + the table of multi-class groups) for the KFP UI."""
    columns = ["group", "classes", "within-group confusion", "members"]
    rows = [
        dict(zip(columns, (gid, len(names), f"{conf:.4f}", ", ".join(str(n) for n in names))))
        for gid, (names, conf) in enumerate(zip(rg.group_names_, rg.within_group_confusion()))
        if len(names) > 1
    ]
    n_single = sum(len(g) == 1 for g in rg.groups_)
    body = html.png_img(png_path, "t-SNE") + html.paragraph(
        f"{len(rows)} multi-class groups, {n_single} singleton classes."
    )
    return html.page(title, body + html.table(rows, columns))
