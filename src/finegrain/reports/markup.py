"""The one rule of every page: text is escaped, only `Markup` (HTML these helpers built) goes in as is."""

from __future__ import annotations

import html
from typing import Any

__all__ = ["Markup", "cell"]


class Markup(str):
    """HTML built by finegrain.reports: inserted as is where plain strings are escaped (table cells)."""


def cell(value: Any) -> str:
    """A value as cell content: Markup as is, anything else as its escaped str()."""
    return value if isinstance(value, Markup) else html.escape(str(value))
