"""Draw the procedural car pictures of the sample dataset: `render(scene)` is a pure function of the scene.

    scene = sample_scene(CLASS_SPECS["소나타_DN8_2020_2023"], np.random.default_rng(0))   # see car_specs
    image = render(scene)                     # PIL RGB, CANVAS size
    data = jpeg_bytes(image)                  # the one fixed encoding the sample's files use

The car is drawn facing right on a transparent layer, flipped, scaled and rotated onto a background of sky,
ground, clutter and band-pass texture, then lit and noised: every step reads its numbers from the scene.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy.fft import idctn

from finegrain.sample.car_specs import BODIES, Scene

# Final picture size (4:3 like the Hecto photos), drawn at SUPERSAMPLE x for anti-aliasing.
CANVAS = (192, 144)
SUPERSAMPLE = 2
_LAYER = (400, 200)  # the car is drawn facing right in this frame, ground at y=170
_TEXTURE_BAND = (10, 24)  # DCT indices (k/2 cycles per picture) the background texture lives in
_TEXTURE_GRID = (96, 72)  # the texture is made at this size and resized (holds the band, 30x cheaper)
JPEG_QUALITY = 90  # of every sample file; planted re-encodes go lower


def jpeg_bytes(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes that depend on the pixels only: fixed settings, no metadata."""
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality, subsampling=2, optimize=False)
    return buf.getvalue()


def _contrast_line(color: tuple[int, int, int]) -> tuple[int, int, int]:
    return (235, 235, 235) if sum(color) < 330 else (30, 30, 35)


def _draw_wheel(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, style: str, phase: float) -> None:
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(20, 20, 22))
    rim = r * 0.68
    rim_fill = {"twotone": (40, 40, 45), "solid": (185, 185, 190)}.get(style, (160, 160, 168))
    d.ellipse((cx - rim, cy - rim, cx + rim, cy + rim), fill=rim_fill)
    if style == "twotone":
        inner = rim * 0.78
        d.ellipse((cx - rim, cy - rim, cx + rim, cy + rim), outline=(225, 225, 230), width=5)
        d.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=(40, 40, 45))
    if style in ("spokes5", "multi"):
        d.ellipse((cx - rim, cy - rim, cx + rim, cy + rim), fill=(45, 45, 50))
        n, width = (5, 7) if style == "spokes5" else (10, 3)
        for k in range(n):
            a = phase + 2 * math.pi * k / n
            d.line(
                (cx, cy, cx + rim * math.cos(a), cy + rim * math.sin(a)), fill=(200, 200, 208), width=width
            )
    hub = r * 0.16
    d.ellipse(
        (cx - hub, cy - hub, cx + hub, cy + hub), fill=(90, 90, 95) if style == "solid" else (210, 210, 215)
    )


def _draw_grille(d: ImageDraw.ImageDraw, box: tuple[float, float, float, float], style: str) -> None:
    x0, y0, x1, y1 = box
    d.rectangle(box, fill=(25, 25, 28))
    light = (190, 190, 198)
    if style == "bars":
        for y in np.linspace(y0 + 4, y1 - 4, 4):
            d.line((x0, y, x1, y), fill=light, width=3)
    elif style == "vertical":
        for x in np.linspace(x0 + 3, x1 - 3, 4):
            d.line((x, y0, x, y1), fill=light, width=3)
    elif style == "mesh":
        for y in np.linspace(y0 + 3, y1 - 3, 5):
            d.line((x0, y, x1, y), fill=light, width=1)
        for x in np.linspace(x0 + 3, x1 - 3, 4):
            d.line((x, y0, x, y1), fill=light, width=1)
    else:  # solid: one chrome panel
        d.rectangle((x0 + 3, y0 + 3, x1 - 3, y1 - 3), fill=(150, 150, 160))


def _draw_lamp(d: ImageDraw.ImageDraw, x: float, y: float, style: str, color: tuple[int, int, int]) -> None:
    if style == "round":
        d.ellipse((x - 12, y - 12, x + 12, y + 12), fill=color, outline=(60, 60, 60), width=2)
    elif style == "rect":
        d.rectangle((x - 20, y - 10, x + 8, y + 10), fill=color, outline=(60, 60, 60), width=2)
    else:  # slim: a long thin light bar
        d.rectangle((x - 44, y - 4, x + 10, y + 3), fill=color)


def draw_car(scene: Scene) -> Image.Image:
    """The car alone, facing right, on a transparent layer of size _LAYER."""
    spec, geo = scene.spec, BODIES[scene.spec.group]
    layer = Image.new("RGBA", _LAYER, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    color, line = scene.body_color, _contrast_line(scene.body_color)
    bx0, by0, bx1, by1 = geo["body"]
    d.ellipse((bx0 + 10, 158, bx1 - 10, 182), fill=(0, 0, 0, 110))  # contact shadow
    roof = (22, 22, 26) if spec.roof == "black" else color
    d.polygon(geo["cabin"], fill=roof)
    if spec.group != "van":  # windows inside the cabin
        pts = np.array(geo["cabin"], dtype=float)
        c = pts.mean(axis=0)
        d.polygon([tuple(c + (p - c) * 0.78 + (0, 6)) for p in pts], fill=(70, 95, 120))
    d.rounded_rectangle(geo["body"], radius=14, fill=color)
    if spec.group == "van":  # one tall box: the side windows and windscreen sit on the body itself
        d.polygon(geo["cabin"], fill=(70, 95, 120))
        d.rectangle((bx0 + 36, by0 + 10, bx1 - 24, by0 + 44), fill=(70, 95, 120))
        if spec.roof == "black":
            d.rectangle((bx0 + 4, by0, bx1, by0 + 8), fill=roof)
    side_top = by0 + 50 if spec.group == "van" else by0  # stripes go below the van's window band
    h = by1 - side_top
    if spec.stripe == "single":
        d.rectangle((bx0 + 12, side_top + h * 0.3, bx1 - 30, side_top + h * 0.3 + 9), fill=line)
    elif spec.stripe == "double":
        for f in (0.22, 0.42):
            d.rectangle((bx0 + 12, side_top + h * f, bx1 - 30, side_top + h * f + 4), fill=line)
    elif spec.stripe == "low":
        d.rectangle(
            (bx0 + 6, by1 - 14, bx1 - 6, by1 - 2), fill=(30, 30, 32) if sum(color) > 150 else (150, 150, 155)
        )
    if scene.sticker is not None:
        sx, sy, scol = scene.sticker
        cx, cy = bx0 + (bx1 - bx0) * sx, side_top + h * sy
        d.ellipse((cx - 6, cy - 6, cx + 6, cy + 6), fill=scol)
    front = max(bx1, max(p[0] for p in geo["cabin"]))
    gy = side_top + h * 0.45
    _draw_grille(d, (front - 26, gy, front - 4, min(gy + 30, by1 - 4)), spec.grille)
    _draw_lamp(d, front - 34, side_top + h * 0.25, spec.lamp, (250, 245, 200))
    _draw_lamp(d, bx0 + 26, side_top + h * 0.25, spec.lamp, (200, 30, 30))  # tail lamp, same family shape
    for wx in geo["wheels"]:
        _draw_wheel(d, wx, 165 - geo["radius"] * 0.35, geo["radius"], spec.wheel, scene.wheel_phase)
    return layer


def _background(scene: Scene, size: tuple[int, int]) -> Image.Image:
    w, h = size
    t = np.linspace(0, 1, h)[:, None, None]
    sky = np.array(scene.sky[0], float) * (1 - t) + np.array(scene.sky[1], float) * t
    img = np.broadcast_to(sky, (h, w, 3)).copy()
    img[int(scene.horizon * h) :] = scene.ground
    bg = Image.fromarray(img.astype(np.uint8))
    d = ImageDraw.Draw(bg)
    for kind, x0, y0, x1, y1, col in scene.clutter:
        box = (x0 * w, y0 * h, x1 * w, y1 * h)
        if kind == "tree":
            d.ellipse(box, fill=(col[0] // 3, 90 + col[1] // 3, col[2] // 4))
        else:
            d.rectangle(box, fill=col)
    out = np.asarray(bg, dtype=np.float32) + scene.texture * _texture(scene.texture_seed, size)[:, :, None]
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def _texture(seed: int, size: tuple[int, int]) -> np.ndarray:
    """Unit-variance band-pass noise: DCT frequencies 5-12 cycles per picture only.

    Blotches that plain to the eye but finer than what a 64-bit pHash sees (the 8x8 lowest DCT frequencies of a
    32x32 thumbnail, under 4 cycles), so two pictures differing in it are look-alikes for pHash, not for pixels.
    """
    w, h = _TEXTURE_GRID
    ky, kx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")  # DCT index k = k/2 cycles per picture
    radius = np.hypot(ky, kx)
    band = (radius >= _TEXTURE_BAND[0]) & (radius <= _TEXTURE_BAND[1])
    field = idctn(np.where(band, np.random.default_rng(seed).normal(0.0, 1.0, (h, w)), 0.0), norm="ortho")
    field = np.asarray(
        Image.fromarray(field.astype(np.float32), mode="F").resize(size, Image.Resampling.BICUBIC)
    )
    return field / (field.std() + 1e-9)


def render(scene: Scene) -> Image.Image:
    """The finished RGB picture of `scene` at CANVAS size."""
    size = (CANVAS[0] * SUPERSAMPLE, CANVAS[1] * SUPERSAMPLE)
    canvas = _background(scene, size)
    car = draw_car(scene)
    if scene.flip:
        car = car.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    car_w = scene.width_frac * size[0]
    car = car.resize(
        (round(car_w), round(car_w * _LAYER[1] / _LAYER[0] * scene.aspect)), Image.Resampling.BILINEAR
    )
    car = car.rotate(scene.angle, resample=Image.Resampling.BILINEAR, expand=True)
    x = round(scene.center[0] * size[0] - car.width / 2)
    y = round(scene.center[1] * size[1] - car.height / 2)
    canvas.paste(car, (x, y), car)  # the alpha mask blends the shadow; negative offsets clip at the edge
    image = canvas.resize(CANVAS, Image.Resampling.LANCZOS)
    if scene.blur:
        image = image.filter(ImageFilter.GaussianBlur(scene.blur))
    pixels = np.asarray(image, dtype=np.float32)
    pixels = (pixels - 128.0) * scene.contrast + 128.0 * scene.brightness
    noise = np.random.default_rng(scene.noise_seed).normal(0.0, scene.noise_sigma, pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).round().astype(np.uint8))
