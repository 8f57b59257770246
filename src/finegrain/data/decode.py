"""The one image decoder: preprocess validation, the training cache and serving all decode through it.

    image = decode_image(data, "s3://bucket/x.jpg")   # uint8 RGB, H x W x 3; UndecodableImageError otherwise
    checked = check_image(data, max_pixels=..., min_side=...)   # never raises: status "ok"/"corrupt", reason

Whatever PIL can open is decoded here and turned into 8-bit RGB the same way everywhere: alpha (RGBA, LA, PA,
palette transparency) is flattened on white, CMYK/grayscale/palette converted, 16-bit and 32-bit integer
scaled to 8 bits, EXIF orientation applied, the first frame of a multi-frame file (GIF, ICO, TIFF) used.
Float images (32-bit TIFF) are scaled when their range says how ([0, 1] or [0, 255]) and refused otherwise.
Training used to decode with OpenCV, which cannot read PCX or ICO, reads a float TIFF as garbage and drops
alpha onto whatever colour the transparent pixels hold: preprocess then called files ok that training could
not use, or saw other pixels. Now preprocess calls a file ok only if this decoder decodes it.

The pixel limit is checked on the header size *before* any pixel data is decoded, so a decompression bomb costs
a few hundred bytes of parsing, not gigabytes of memory. PIL's own bomb error (at 2 x Image.MAX_IMAGE_PIXELS)
applies to every caller alike.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class UndecodableImageError(ValueError):
    """decode_image could not turn the bytes into RGB; the message names the file and says why."""


# EXIF orientation tag; values 2..8 mean the stored pixels must be flipped/rotated before display.
_ORIENTATION = 0x0112


@dataclass
class CheckedImage:
    """The outcome of decoding one file. `image` is RGB when status == "ok", else None."""

    status: str  # "ok" or "corrupt" ("unread" in a scan row: the bytes could not be read, nothing was judged)
    reason: str  # why corrupt; for ok images the conversions applied ("" when none)
    width: int = 0  # after EXIF rotation; 0 when the header could not be read
    height: int = 0
    image: Image.Image | None = None
    orientation: int = 1  # the EXIF orientation applied to the stored pixels (1: none)


def _corrupt(reason: str, width: int = 0, height: int = 0) -> CheckedImage:
    return CheckedImage("corrupt", reason, width, height)


def _to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    """Convert any decoded mode to 8-bit RGB, noting what was done (the notes end up in the manifest)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # PIL's own I;16 -> RGB conversion clips at 255 (a white image); scale the real range instead.
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr8 = np.clip(arr * (255.0 / hi) + 0.5, 0, 255).astype(np.uint8)
        notes.append(f"{mode} 16-bit scaled to 8-bit")
        return Image.fromarray(arr8, "L").convert("RGB")
    if mode == "F":
        # A per-image min-max stretch would make the same picture look different in every file; only the two
        # conventions that say what white is are accepted.
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise ValueError("float image holds NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= 0.0 and hi <= 1.0:
            arr, notes_text = arr * 255.0, "float [0, 1] image scaled to 8-bit"
        elif lo >= 0.0 and hi <= 255.0:
            notes_text = "float [0, 255] image rounded to 8-bit"
        else:
            raise ValueError(f"float image with values in [{lo:g}, {hi:g}]: neither [0, 1] nor [0, 255]")
        notes.append(notes_text)
        return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        # Flatten on white: transparent product photos are shot on white, and black would add a fake edge.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        notes.append(f"{mode} alpha flattened on white")
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    elif mode in ("L", "1"):
        notes.append("grayscale converted to RGB")
    elif mode != "P":
        notes.append(f"{mode} converted to RGB")
    return img.convert("RGB")


def check_image(
    data: bytes,
    *,
    max_pixels: int,
    min_side: int = 1,
    draft_size: int | None = None,
    gray: bool = False,
) -> CheckedImage:
    """Decode `data` fully (so truncation is caught) and return it as RGB, or say why it is unusable.

    draft_size: for JPEG, decode at a reduced DCT scale (1/2, 1/4 or 1/8) whose result is still at least this
        many pixels on each side. Every scanline of the entropy-coded stream is still decoded, so truncated files
        are still detected, at 1.5-2x less cost than a full decode.
    gray: return an L (8-bit gray) image instead of RGB. A colour JPEG is then decoded as its luma channel alone,
        skipping chroma upsampling and colour conversion; the reason still lists what the RGB path would have
        converted (training reads the file as RGB).
    """
    if not data:
        return _corrupt("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own limit is applied below; PIL's warning/error for huge headers must not escape or abort.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        return _corrupt(f"decompression bomb refused before decoding: {exc}")
    except UnidentifiedImageError:
        return _corrupt(f"not an image: no known image format recognised ({len(data)} bytes)")
    except Exception as exc:  # noqa: BLE001 - any parser failure on a file is that file's problem, not the run's
        return _corrupt(f"unreadable image header: {type(exc).__name__}: {exc}")

    width, height = img.size
    source_mode = img.mode
    if width * height > max_pixels:
        return _corrupt(
            f"decompression bomb refused before decoding: {width}x{height} = {width * height:,} pixels "
            f"> preprocess.max_pixels {max_pixels:,}",
            width,
            height,
        )
    if min(width, height) < min_side:
        return _corrupt(f"too small: {width}x{height} < preprocess.min_side {min_side}", width, height)

    notes: list[str] = []
    try:
        orientation = int(img.getexif().get(_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not make the pixels unusable
        orientation = 1
        notes.append("unreadable EXIF ignored")
    try:
        if img.format == "JPEG" and (draft_size or gray):
            img.draft("L" if gray else "RGB", (draft_size, draft_size) if draft_size else img.size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
    except Exception as exc:  # noqa: BLE001 - truncated, bad Huffman tables, broken PNG chunks, ...
        return _corrupt(f"corrupt {img.format or 'image'} data: {type(exc).__name__}: {exc}", width, height)
    if getattr(img, "n_frames", 1) > 1:
        notes.append(f"first of {img.n_frames} frames used")
    if orientation in range(2, 9):
        img = ImageOps.exif_transpose(img)
        notes.append(f"EXIF orientation {orientation} applied")
        if orientation in (5, 6, 7, 8):
            width, height = height, width
    try:
        if gray and img.mode == "L" and source_mode != "L":
            out = img  # a colour JPEG decoded as luma: nothing the RGB path would have noted
        else:
            out = _to_rgb(img, notes)
            out = out.convert("L") if gray else out
    except Exception as exc:  # noqa: BLE001
        return _corrupt(f"cannot convert {img.mode} image to RGB: {type(exc).__name__}: {exc}", width, height)
    return CheckedImage("ok", "; ".join(notes), width, height, out, orientation if orientation in range(2, 9) else 1)


def decode_image(
    data: bytes, where: str = "image", max_pixels: int | None = None, min_side: int = 1
) -> np.ndarray:
    """Encoded image bytes -> uint8 RGB, H x W x 3 (writeable, C-contiguous); UndecodableImageError naming
    `where` with check_image's reason when they are not a usable image.

    max_pixels, min_side: preprocess's limits (the served model passes its training run's), so a file
    preprocess would call corrupt is refused here with the same reason.
    """
    checked = check_image(data, max_pixels=max_pixels or 2**62, min_side=min_side)
    if checked.image is None:
        raise UndecodableImageError(f"{where}: cannot decode image ({len(data)} bytes): {checked.reason}")
    return np.array(checked.image, dtype=np.uint8)
