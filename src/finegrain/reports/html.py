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

__all__ = ["page", "paragraph", "png_img", "table"]

_STYLE = (
    "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:2px 6px}"
)


def page(title: str, body_html: str) -> str:
    """A whole page: `title` (escaped) as its title and heading, then `body_html` as given."""
    shown = html.escape(str(title))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{shown}</title><style>{_STYLE}</style>"
        f"</head><body><h2>{shown}</h2>{body_html}</body></html>"
    )


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A table of `rows` under `columns` (a key a row lacks is an empty cell); every cell and heading escaped.

    Cells show str(value): a caller that wants fewer decimals formats its numbers first.
    """
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def paragraph(text: str) -> str:
    """One paragraph of plain (escaped) text."""
    return f"<p>{html.escape(str(text))}</p>"


def png_img(png: str | Path | bytes, alt: str = "") -> str:
    """An <img> with the PNG (a path or its bytes) inlined as a base64 data URI, scaled to the page width."""
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    encoded = base64.b64encode(data).decode("ascii")
    return (
        f"<img alt='{html.escape(str(alt))}' style='max-width:100%' src='data:image/png;base64,{encoded}'/>"
    )
