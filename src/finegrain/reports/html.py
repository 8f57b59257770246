"""Self-contained HTML pages (no external scripts, styles or images) for the KFP UI's viewer and MLflow.

    body = png_img("reliability.png", "reliability diagram") + table(rows, ["member", "temperature"])
    Path("page.html").write_text(page("Calibration: before / after", body), encoding="utf-8")

Every piece of text that goes through here is escaped (titles, cells, paragraphs, alt text): class names and
member ids come from data, and one holding `<` or `&` must show as written, never become markup. Only
`body_html` is taken as HTML, and it should be built from these functions.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from finegrain.reports.markup import Markup, cell
from finegrain.reports.tables import SCRIPT

__all__ = ["Markup", "details", "heading", "image", "page", "paragraph", "png_img", "table"]

_STYLE = (
    "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:2px 6px}"
)
# Extra rules for the pieces of finegrain.reports.gallery and .tables; only pages that use them carry them.
_WIDGET_STYLE = (
    "td,th{vertical-align:top}th.fg-sort{cursor:pointer;background:#f4f4f4}th.fg-sort:after{content:' \\2195';"
    "color:#999}.fg-pager{margin:4px 0;font-size:90%}.fg-pager input{margin-right:8px}"
    ".fg-pager button{margin:0 2px}.fg-thumbs{display:flex;flex-wrap:wrap;gap:6px}"
    ".fg-thumb{margin:0;width:var(--w,120px);font-size:75%;word-break:break-all}"
    ".fg-thumb img,.fg-missing{width:var(--w,120px);height:var(--w,120px);object-fit:contain;background:#eee;"
    "display:block}.fg-missing{display:flex;align-items:center;justify-content:center;text-align:center;"
    "color:#a00;font-size:85%;overflow:hidden}.fg-bad{color:#a00}details{margin:6px 0}summary{cursor:pointer}"
    ".fg-note{color:#555;font-size:90%}"
)
_WIDGETS = ("fg-table", "fg-thumb")


def page(title: str, body_html: str) -> str:
    """A whole page: `title` (escaped) as its title and heading, then `body_html` as given."""
    shown = html.escape(str(title))
    style, script = _STYLE, ""
    if any(marker in body_html for marker in _WIDGETS):
        style, script = _STYLE + _WIDGET_STYLE, f"<script>{SCRIPT}</script>"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{shown}</title><style>{style}</style>"
        f"</head><body><h2>{shown}</h2>{body_html}{script}</body></html>"
    )


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A table of `rows` under `columns` (a key a row lacks is an empty cell); every cell and heading escaped.

    Cells show str(value): a caller that wants fewer decimals formats its numbers first.
    """
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell(row.get(c, ''))}</td>" for c in columns) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def paragraph(text: str, css_class: str = "") -> Markup:
    """One paragraph of plain (escaped) text."""
    attr = f" class='{html.escape(css_class)}'" if css_class else ""
    return Markup(f"<p{attr}>{html.escape(str(text))}</p>")


def heading(text: str, level: int = 3) -> Markup:
    """A section heading (escaped); the page title is the level-2 heading."""
    return Markup(f"<h{int(level)}>{html.escape(str(text))}</h{int(level)}>")


def details(summary: str, body_html: str, open_: bool = False) -> Markup:
    """A collapsible section: `summary` (escaped) always shown, `body_html` on click."""
    return Markup(
        f"<details{' open' if open_ else ''}><summary>{html.escape(str(summary))}</summary>{body_html}</details>"
    )


def png_img(png: str | Path | bytes, alt: str = "") -> Markup:
    """An <img> with the PNG (a path or its bytes) inlined as a base64 data URI, scaled to the page width."""
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    encoded = base64.b64encode(data).decode("ascii")
    return Markup(
        f"<img alt='{html.escape(str(alt))}' style='max-width:100%' src='data:image/png;base64,{encoded}'/>"
    )


def image(data: bytes, mime: str, alt: str = "", title: str = "") -> Markup:
    """An <img> of `data` (JPEG, PNG, ...) inlined as a data URI, loaded lazily (a paged table hides most)."""
    encoded = base64.b64encode(data).decode("ascii")
    hover = f" title='{html.escape(str(title))}'" if title else ""
    return Markup(
        f"<img alt='{html.escape(str(alt))}'{hover} loading='lazy' src='data:{html.escape(mime)};base64,{encoded}'/>"
    )
