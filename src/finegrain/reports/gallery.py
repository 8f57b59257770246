"""Thumbnails with captions: the pictures a report is about (duplicates, conflicts, mistakes), inlined.

    thumbs = {"train/a/1.jpg": jpeg_bytes, ...}        # made by finegrain.data.thumbnails
    gallery.strip([gallery.figure(thumbs.get(p), p, note=reason) for p in paths])

The bytes are JPEGs small enough (~4 KB at 112 px) that a page with a few hundred stays a few MB. A picture
that has no thumbnail (a corrupt file, or one left out to keep the page small) shows a grey box with why.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from finegrain.reports.html import image
from finegrain.reports.markup import Markup

__all__ = ["figure", "strip"]


def figure(
    thumb: bytes | None,
    caption: str,
    note: str = "",
    missing: str = "no picture",
    bad: bool = False,
    title: str = "",
) -> Markup:
    """One thumbnail (JPEG bytes) over its caption and an optional note (all escaped); None: a grey box saying
    `missing` (why there is no picture). `bad` shows the note in red; `title` is the hover text."""
    hover = title or caption
    if thumb is None:
        picture = f"<div class='fg-missing' title='{html.escape(hover)}'>{html.escape(missing)}</div>"
    else:
        picture = image(thumb, "image/jpeg", alt=caption, title=hover)
    extra = f"<br><span class='{'fg-bad' if bad else 'fg-note'}'>{html.escape(note)}</span>" if note else ""
    return Markup(
        f"<figure class='fg-thumb'>{picture}<figcaption>{html.escape(caption)}{extra}</figcaption></figure>"
    )


def strip(figures: Sequence[str], width: int = 0, wrap: bool = True) -> Markup:
    """Figures side by side, wrapping unless `wrap` is False (a table cell's few pictures stay on one line);
    `width` > 0 sets the thumbnail width in CSS pixels (default 120)."""
    styles = ([f"--w:{int(width)}px"] if width else []) + ([] if wrap else ["flex-wrap:nowrap"])
    style = f" style='{';'.join(styles)}'" if styles else ""
    return Markup(f"<div class='fg-thumbs'{style}>{''.join(figures)}</div>")
