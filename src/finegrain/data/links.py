"""Symbolic links in a local dataset: which ones the dataset reader refuses, and why.

A dataset is what lies under its root. A link to a file outside it would be read (and its path recorded in the
manifest, its bytes hashed and decoded) as if it were part of the dataset -- a copied dataset may carry links to
a home directory -- and a linked directory is not descended into by the listing, so its images would silently
be missing. Links to files inside the root are only a second name for a file that is there anyway.
"""

from __future__ import annotations

import os
from pathlib import Path

SHOWN = 5


def refused_links(root: str | Path) -> list[str]:
    """`link -> target` for each linked directory and each link to a file outside `root` (or to nothing)."""
    root = Path(root)
    real_root = root.resolve()
    refused = []
    for here, dirs, files in os.walk(root):  # followlinks=False: a linked directory is listed, not entered
        for name in sorted(dirs) + sorted(files):
            path = Path(here, name)
            if not path.is_symlink():
                continue
            target = path.resolve()
            if path.is_dir():
                refused.append(f"{path} -> {target} (a linked directory)")
            elif not path.exists():
                refused.append(f"{path} -> {os.readlink(path)} (points to nothing)")
            elif not target.is_relative_to(real_root):
                refused.append(f"{path} -> {target} (outside the dataset)")
    return refused


def links_message(root: str | Path, refused: list[str]) -> str:
    """One line naming the refused links and the fix."""
    shown = "; ".join(refused[:SHOWN]) + (f"; ... ({len(refused)} in all)" if len(refused) > SHOWN else "")
    return (
        f"{root}: {len(refused)} symbolic link(s) the dataset reader does not follow: {shown}; copy the files into "
        "the dataset (cp -rL) instead of linking them"
    )
