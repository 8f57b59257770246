"""Small JPEG thumbnails of dataset images, and their paths as a person reads them, for the report pages.

    thumbs = make_thumbnails(paths, side=112)        # {path: JPEG bytes}; unreadable or corrupt: left out
    root, shown = display_paths(manifest["path"])    # "train/classA/1.jpg" instead of this machine's /home/...

Thumbnails go through the one decoder (finegrain.data.decode), so a page shows what training sees (EXIF
rotation applied, alpha flattened on white). JPEGs are decoded at a reduced DCT scale, so a thumbnail costs a
fraction of a full decode; files are read on a few threads (S3 latency, not CPU, is what they wait on).
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from finegrain import storage
from finegrain.data.decode import check_image

THUMB_SIDE = 112
THUMB_QUALITY = 72  # ~3-5 KB each: a page with a few hundred stays a few MB
READ_THREADS = 8


def thumbnail(data: bytes, side: int = THUMB_SIDE, max_pixels: int = 40_000_000) -> bytes | None:
    """JPEG bytes of the image scaled to fit `side` x `side`; None when it does not decode."""
    checked = check_image(data, max_pixels=max_pixels, draft_size=side)
    if checked.image is None:
        return None
    img = checked.image.convert("RGB")
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=THUMB_QUALITY, optimize=True)
    return out.getvalue()


def _read_thumb(path: str, side: int, max_pixels: int) -> bytes | None:
    try:
        return thumbnail(storage.read_bytes(path), side, max_pixels)
    except OSError:  # gone or unreadable since it was scanned: the page shows a grey box instead
        return None


def make_thumbnails(
    paths: Iterable[str], side: int = THUMB_SIDE, max_pixels: int = 40_000_000, threads: int = READ_THREADS
) -> dict[str, bytes]:
    """{path: JPEG thumbnail} of every distinct path that reads and decodes (the others are left out)."""
    unique = list(dict.fromkeys(str(p) for p in paths))
    if not unique:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(unique)))) as pool:
        thumbs = pool.map(lambda p: _read_thumb(p, side, max_pixels), unique)
        return {p: t for p, t in zip(unique, thumbs) if t is not None}


def display_paths(paths: Sequence[str]) -> tuple[str, list[str]]:
    """(root, paths relative to it): the deepest directory holding every path (the dataset root when the
    paths span its train/ and test/ folders), so pages never show where this machine keeps the data."""
    paths = [str(p) for p in paths]
    if not paths:
        return "", []
    dirs = [p.rsplit("/", 1)[0] if "/" in p else "" for p in paths]
    root = dirs[0]
    for d in dirs[1:]:
        while root and not (d == root or d.startswith(root.rstrip("/") + "/")):
            root = posixpath.dirname(root.rstrip("/")) if "/" in root.rstrip("/") else ""
    if storage.is_s3(paths[0]) and len(root) <= len("s3://"):
        root = ""  # paths in several buckets: shown whole
    cut = len(root.rstrip("/")) + 1 if root else 0
    return root, [p[cut:] for p in paths]


def root_name(root: str) -> str:
    """A dataset root as a page names it: an s3:// URI in full, a local directory by its name only."""
    return str(root) if storage.is_s3(root) else str(root).rstrip("/").rsplit("/", 1)[-1]
