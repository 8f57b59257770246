"""The kinds of copy people make of a photo, each as a function of (original JPEG bytes, rng) -> copy bytes.

    data = KINDS["crop_onesided"](original_jpeg, rng)

How copies enter scraped fine-grained sets: saved again at another quality, resized, trimmed at the edges and
scaled back to the page's size, mirrored, straightened, brightened, letterboxed into another frame, uploaded from a
phone that stores the pixels sideways with an EXIF tag, or stamped with a watermark. Parameters are drawn per copy
from the ranges the benchmark's README table states.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def _jpeg(img: Image.Image, quality: int = 90, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


def exact(data: bytes, rng: np.random.Generator) -> bytes:
    return data


def reencode(data: bytes, rng: np.random.Generator) -> bytes:
    return _jpeg(_open(data), int(rng.integers(30, 96)))


def resize(data: bytes, rng: np.random.Generator) -> bytes:
    img = _open(data)
    k = float(rng.uniform(0.4, 0.8) if rng.random() < 0.5 else rng.uniform(1.25, 2.0))
    return _jpeg(img.resize((round(img.width * k), round(img.height * k)), Image.Resampling.LANCZOS))


def _crop_back(img: Image.Image, fractions) -> bytes:
    w, h = img.size
    left, top, right, bottom = fractions
    box = (round(w * left), round(h * top), round(w * (1 - right)), round(h * (1 - bottom)))
    return _jpeg(img.crop(box).resize((w, h), Image.Resampling.LANCZOS))


def crop_uniform(data: bytes, rng: np.random.Generator) -> bytes:
    """The same 1-10 % off every edge, scaled back to the original's size."""
    return _crop_back(_open(data), [float(rng.uniform(0.01, 0.10))] * 4)


def crop_onesided(data: bytes, rng: np.random.Generator) -> bytes:
    """1-10 % off one edge only, scaled back to the original's size (the picture is stretched along one axis)."""
    fractions = [0.0] * 4
    fractions[int(rng.integers(4))] = float(rng.uniform(0.01, 0.10))
    return _crop_back(_open(data), fractions)


def hflip(data: bytes, rng: np.random.Generator) -> bytes:
    return _jpeg(_open(data).transpose(Image.Transpose.FLIP_LEFT_RIGHT))


def rotate(data: bytes, rng: np.random.Generator) -> bytes:
    """Straightened by 1-5 degrees either way, as a photo editor does: rotated, cropped to the largest
    rectangle of the original's shape with no empty corner, scaled back to the original's size."""
    img = _open(data)
    angle = float(rng.uniform(1, 5)) * (1 if rng.random() < 0.5 else -1)
    w, h = img.size
    a = np.deg2rad(abs(angle))
    k = 1.0 / (np.cos(a) + np.sin(a) * max(w / h, h / w))  # the inner rectangle's share of each side
    turned = img.rotate(angle, resample=Image.Resampling.BICUBIC)
    cw, ch = w * k, h * k
    box = (round((w - cw) / 2), round((h - ch) / 2), round((w + cw) / 2), round((h + ch) / 2))
    return _jpeg(turned.crop(box).resize((w, h), Image.Resampling.LANCZOS))


def photometric(data: bytes, rng: np.random.Generator) -> bytes:
    """Brightness x0.7-1.3, contrast x0.7-1.3 and gamma 0.6-1.6, together."""
    img = ImageEnhance.Brightness(_open(data)).enhance(float(rng.uniform(0.7, 1.3)))
    img = ImageEnhance.Contrast(img).enhance(float(rng.uniform(0.7, 1.3)))
    gamma = float(rng.uniform(0.6, 1.6))
    lut = [round(255 * (v / 255) ** gamma) for v in range(256)] * 3
    return _jpeg(img.point(lut))


def letterbox(data: bytes, rng: np.random.Generator) -> bytes:
    """Fitted into a frame of another shape (16:9, square or 3:4) with black or white bars."""
    img = _open(data)
    aspect = [16 / 9, 1.0, 3 / 4][int(rng.integers(3))]
    fw = 800
    fh = round(fw / aspect)
    k = min(fw / img.width, fh / img.height)
    inner = img.resize((round(img.width * k), round(img.height * k)), Image.Resampling.LANCZOS)
    frame = Image.new("RGB", (fw, fh), (0, 0, 0) if rng.random() < 0.5 else (255, 255, 255))
    frame.paste(inner, ((fw - inner.width) // 2, (fh - inner.height) // 2))
    return _jpeg(frame)


def exif_rotated(data: bytes, rng: np.random.Generator) -> bytes:
    """Pixels stored turned (90, 180 or 270 degrees) with the EXIF Orientation that shows them upright."""
    # Orientation 6 = "turn 90 degrees clockwise to show": the stored pixels are the picture turned the other way.
    orientation, turn = [(6, Image.Transpose.ROTATE_90), (3, Image.Transpose.ROTATE_180),
                         (8, Image.Transpose.ROTATE_270)][int(rng.integers(3))]  # fmt: skip
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _jpeg(_open(data).transpose(turn), exif=exif.tobytes())


def overlay(data: bytes, rng: np.random.Generator) -> bytes:
    """A watermark: a small filled box with text in a corner (about 1-3 % of the picture)."""
    img = _open(data)
    w, h = img.size
    bw, bh = round(w * float(rng.uniform(0.15, 0.25))), round(h * float(rng.uniform(0.06, 0.10)))
    x = 8 if rng.random() < 0.5 else w - bw - 8
    y = 8 if rng.random() < 0.5 else h - bh - 8
    draw = ImageDraw.Draw(img)
    fill = tuple(int(v) for v in rng.integers(0, 256, 3))
    draw.rectangle((x, y, x + bw, y + bh), fill=fill)
    draw.text((x + 6, y + bh // 4), "(c) dealer.example", fill=tuple(255 - v for v in fill))
    return _jpeg(img)


KINDS = {
    "exact": exact, "reencode": reencode, "resize": resize, "crop_uniform": crop_uniform,
    "crop_onesided": crop_onesided, "hflip": hflip, "rotate": rotate, "photometric": photometric,
    "letterbox": letterbox, "exif_rotated": exif_rotated, "overlay": overlay,
}  # fmt: skip

# The kind of copy (config.copy_kinds) the preprocess check should name for each (exact copies are linked by
# their bytes before any check).
NAMED = {
    "exact": "exact", "reencode": "reencode", "resize": "resize", "crop_uniform": "crop", "crop_onesided": "crop",
    "hflip": "flip", "rotate": "rotation", "photometric": "photometric", "letterbox": "letterbox",
    "exif_rotated": "exif", "overlay": "overlay",
}  # fmt: skip
