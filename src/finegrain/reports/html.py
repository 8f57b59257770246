"""Self-contained HTML pages (no external scripts or styles): every text escaped, images embedded."""

from __future__ import annotations

import base64
import html
from pathlib import Path

STYLE = "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"


def page(title: str, body_html: str) -> str:
    t = html.escape(title)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{t}</title><style>{STYLE}</style></head>"
            f"<body><h2>{t}</h2>{body_html}</body></html>")


def table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def png_img(png: str | Path | bytes, alt: str = "") -> str:
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return f"<img alt='{html.escape(alt, quote=True)}' style='max-width:100%' src='{src}'/>"
