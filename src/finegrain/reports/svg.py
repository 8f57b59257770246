"""Small inline SVG charts: crisp at any zoom, a few KB, and hovering a bar or point says what it is.

    svg.histogram(images_per_class, "images per class")
    svg.scatter(xy, colours, hover_texts, labels=[("3", (x, y))])

Every text (hover titles, axis labels) is escaped. No script: the hover text is the SVG <title> element.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from finegrain.reports.markup import Markup

__all__ = ["histogram", "scatter"]


def _e(text: object) -> str:
    return html.escape(str(text))


def histogram(
    values: Sequence[float], xlabel: str, bins: int = 30, width: int = 720, height: int = 220
) -> Markup:
    """Bars of how many `values` fall in each of `bins` equal-width bins (integer bins for small integer
    ranges); hovering a bar gives its range and count."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return Markup("")
    lo, hi = float(v.min()), float(v.max())
    # Small integer ranges (images per class of a tiny set) get one bar per value, centred on it.
    per_value = bool(np.all(v == np.round(v))) and hi - lo + 1 <= bins
    edges = np.arange(lo, hi + 2) - 0.5 if per_value else np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    counts, edges = np.histogram(v, bins=edges)
    left, bottom, top, right = 48, 34, 10, 10
    w, h = width - left - right, height - bottom - top
    peak = max(int(counts.max()), 1)
    bar_w = w / len(counts)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-size='11'>"]
    for i, c in enumerate(counts):
        bh = h * c / peak
        a, b = edges[i], edges[i + 1]
        span = f"{a + 0.5:.0f}" if per_value else f"{a:.4g} to {b:.4g}"
        parts.append(
            f"<rect x='{left + i * bar_w:.1f}' y='{top + h - bh:.1f}' width='{max(bar_w - 1, 1):.1f}' "
            f"height='{bh:.1f}' fill='#4c78a8'><title>{_e(span)}: {int(c)}</title></rect>"
        )
    base = top + h
    parts.append(f"<line x1='{left}' y1='{base}' x2='{left + w}' y2='{base}' stroke='#333'/>")
    parts.append(f"<line x1='{left}' y1='{top}' x2='{left}' y2='{base}' stroke='#333'/>")
    inset = bar_w / 2 if per_value else 0.0  # a value's tick under the middle of its bar
    first, last = (edges[0] + 0.5, edges[-1] - 0.5) if per_value else (edges[0], edges[-1])
    for frac in (0.0, 0.5, 1.0):
        x = left + inset + frac * (w - 2 * inset)
        value = first + frac * (last - first)
        parts.append(f"<text x='{x:.1f}' y='{base + 14}' text-anchor='middle'>{_e(f'{value:.4g}')}</text>")
    parts.append(f"<text x='{left - 4}' y='{top + 8}' text-anchor='end'>{peak}</text>")
    parts.append(f"<text x='{left - 4}' y='{base}' text-anchor='end'>0</text>")
    parts.append(f"<text x='{left + w / 2:.1f}' y='{height - 4}' text-anchor='middle'>{_e(xlabel)}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))


def scatter(
    xy: np.ndarray,
    colours: Sequence[str],
    titles: Sequence[str],
    sizes: Sequence[float] | None = None,
    labels: Sequence[tuple[str, tuple[float, float]]] = (),
    width: int = 900,
    height: int = 700,
) -> Markup:
    """Points (CSS colours, radius `sizes` px) whose hover text is `titles`; `labels` are (text, data
    coordinates) pairs drawn just above-right of that point (group numbers beside their classes)."""
    xy = np.asarray(xy, dtype=np.float64)
    if len(xy) == 0:
        return Markup("")
    pad = 16
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    scale = min((width - 2 * pad) / span[0], (height - 2 * pad) / span[1])

    def at(p: np.ndarray) -> tuple[float, float]:
        return pad + (p[0] - lo[0]) * scale, height - pad - (p[1] - lo[1]) * scale

    radii = np.full(len(xy), 4.0) if sizes is None else np.asarray(sizes, dtype=np.float64)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-size='11'>"]
    for p, colour, title, r in zip(xy, colours, titles, radii):
        x, y = at(p)
        parts.append(
            f"<circle cx='{x:.1f}' cy='{y:.1f}' r='{r:.1f}' fill='{_e(colour)}' fill-opacity='0.85' "
            f"stroke='#333' stroke-width='0.3'><title>{_e(title)}</title></circle>"
        )
    for text, p in labels:
        x, y = at(np.asarray(p))
        parts.append(
            f"<text x='{x + 5:.1f}' y='{y - 4:.1f}' font-size='9' paint-order='stroke' "
            f"stroke='white' stroke-width='3'>{_e(text)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
