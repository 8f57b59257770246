"""Procedural car pictures for the sample dataset: coarse groups (makes) and fine classes (model years).

A group fixes the body silhouette, wheel base and colour palette; a class within the group varies the fine
details -- grille pattern, lamp shape, side stripe, roof colour, wheel style -- the way model years of one make
differ. A `Scene` holds every random choice of one picture (pose, colours, background, lighting, noise), so a
picture can be re-rendered exactly or with only its small details changed (`vary_details`).

    spec = CarSpec(group="sedan", grille="mesh", lamp="slim", stripe="none", roof="black", wheel="multi")
    scene = sample_scene(spec, np.random.default_rng(0))
    image = render(scene)                     # PIL RGB, CANVAS size
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy.fft import idctn

# Final picture size (4:3 like the Hecto photos), drawn at SUPERSAMPLE x for anti-aliasing.
CANVAS = (192, 144)
SUPERSAMPLE = 2
_LAYER = (400, 200)  # the car is drawn facing right in this frame, ground at y=170
_TEXTURE_BAND = (10, 24)  # DCT indices (k/2 cycles per picture) the background texture lives in
_TEXTURE_GRID = (96, 72)  # the texture is made at this size and resized (holds the band, 30x cheaper)

# Per group: lower body box, cabin polygon, wheel centres/radius, palette. The silhouette tells makes apart.
_BODIES = {
    "sedan": {"body": (20, 112, 382, 165), "cabin": [(112, 112), (152, 64), (268, 64), (314, 112)],
        "wheels": (88, 312), "radius": 31, "palette": [(200, 200, 205), (35, 38, 45), (150, 20, 30), (30, 60, 120)]},
    "suv": {"body": (22, 96, 378, 162), "cabin": [(60, 96), (86, 44), (300, 44), (338, 96)],
        "wheels": (92, 306), "radius": 36, "palette": [(235, 235, 230), (70, 75, 60), (20, 20, 25), (110, 115, 120)]},
    "luxury": {"body": (10, 116, 390, 164), "cabin": [(80, 116), (126, 72), (228, 72), (262, 116)],
        "wheels": (78, 318), "radius": 32, "palette": [(15, 15, 20), (120, 100, 80), (190, 190, 195), (40, 55, 45)]},
    "hatch": {"body": (70, 100, 338, 162), "cabin": [(78, 100), (108, 50), (268, 54), (306, 100)],
        "wheels": (120, 290), "radius": 30, "palette": [(240, 200, 40), (90, 170, 200), (230, 120, 150), (245, 245, 245)]},
    "van": {"body": (24, 40, 352, 160), "cabin": [(352, 40), (352, 160), (384, 160), (384, 100)],
        "wheels": (90, 300), "radius": 33, "palette": [(240, 240, 240), (60, 60, 70), (150, 160, 170), (25, 45, 90)]},
}  # fmt: skip
GROUPS = tuple(_BODIES)
GRILLES = ("bars", "mesh", "vertical", "solid")
LAMPS = ("round", "rect", "slim")
STRIPES = ("none", "single", "double", "low")
ROOFS = ("body", "black")
WHEELS = ("spokes5", "solid", "multi", "twotone")


@dataclass(frozen=True)
class CarSpec:
    """What makes a class: its group's silhouette plus the fine details that tell model years apart."""

    group: str
    grille: str
    lamp: str
    stripe: str
    roof: str
    wheel: str

    def __post_init__(self) -> None:
        for name, allowed in (("group", GROUPS), ("grille", GRILLES), ("lamp", LAMPS), ("stripe", STRIPES),
                              ("roof", ROOFS), ("wheel", WHEELS)):  # fmt: skip
            if getattr(self, name) not in allowed:
                raise ValueError(f"CarSpec.{name}={getattr(self, name)!r}; choose one of {list(allowed)}")


@dataclass(frozen=True)
class Scene:
    """Every random choice behind one picture; `render(scene)` is a pure function of it."""

    spec: CarSpec
    body_color: tuple[int, int, int]
    flip: bool
    angle: float  # degrees
    width_frac: float  # car width / canvas width
    aspect: float  # vertical squash (a little perspective)
    center: tuple[float, float]  # car centre, fraction of the canvas
    sky: tuple[tuple[int, int, int], tuple[int, int, int]]
    ground: tuple[int, int, int]
    horizon: float
    clutter: tuple[tuple, ...]  # background shapes: (kind, x0, y0, x1, y1, colour), canvas fractions
    texture: float  # strength (grey levels) of the blotchy background texture: foliage, gravel, crowds
    texture_seed: int
    wheel_phase: float  # spoke rotation, radians
    sticker: tuple[float, float, tuple[int, int, int]] | None  # small decal on the door (x, y frac of body)
    brightness: float
    contrast: float
    noise_sigma: float
    noise_seed: int
    blur: float


def _jitter_color(rng: np.random.Generator, color: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in color)  # type: ignore[return-value]


def _clutter(rng: np.random.Generator, horizon: float) -> tuple[tuple, ...]:
    shapes = []
    for _ in range(int(rng.integers(3, 9))):
        kind = "tree" if rng.random() < 0.4 else "building"
        w, h = rng.uniform(0.05, 0.22), rng.uniform(0.1, 0.45)
        x0 = rng.uniform(-0.05, 1.0)
        shapes.append(
            (kind, x0, horizon - h, x0 + w, horizon + 0.01, _jitter_color(rng, (120, 120, 120), 90))
        )
    return tuple(shapes)


def _sticker(rng: np.random.Generator) -> tuple[float, float, tuple[int, int, int]] | None:
    if rng.random() < 0.5:
        return None
    return (
        float(rng.uniform(0.3, 0.7)),
        float(rng.uniform(0.2, 0.7)),
        _jitter_color(rng, (128, 128, 128), 127),
    )


def sample_scene(spec: CarSpec, rng: np.random.Generator) -> Scene:
    """Draw pose, colours, background and lighting for one picture of `spec`."""
    palette = _BODIES[spec.group]["palette"]
    horizon = float(rng.uniform(0.45, 0.7))
    return Scene(
        spec=spec,
        body_color=_jitter_color(rng, palette[int(rng.integers(len(palette)))], 12),
        flip=bool(rng.random() < 0.5),
        angle=float(rng.uniform(-5, 5)),
        width_frac=float(rng.uniform(0.7, 0.95)),
        aspect=float(rng.uniform(0.9, 1.1)),
        center=(float(rng.uniform(0.38, 0.62)), float(rng.uniform(0.5, 0.66))),
        sky=(_jitter_color(rng, (170, 200, 230), 50), _jitter_color(rng, (220, 225, 235), 30)),
        ground=_jitter_color(rng, (110, 110, 100), 50),
        horizon=horizon,
        clutter=_clutter(rng, horizon),
        texture=float(rng.uniform(0, 30)),
        texture_seed=int(rng.integers(2**31)),
        wheel_phase=float(rng.uniform(0, 2 * math.pi)),
        sticker=_sticker(rng),
        brightness=float(rng.uniform(0.75, 1.25)),
        contrast=float(rng.uniform(0.85, 1.15)),
        noise_sigma=float(rng.uniform(2, 8)),
        noise_seed=int(rng.integers(2**31)),
        blur=float(rng.uniform(0.4, 0.9)) if rng.random() < 0.3 else 0.0,
    )


def vary_details(scene: Scene, rng: np.random.Generator) -> Scene:
    """Same class, pose, colour, layout and lighting; different small details (texture, decal, wheels, noise).

    With a strong `texture` the two pictures share their 64-bit pHash (give or take a few bits) yet differ
    plainly pixel by pixel: look-alikes that a near-duplicate finder must not merge.
    """
    return replace(
        scene,
        texture_seed=int(rng.integers(2**31)),
        wheel_phase=float(rng.uniform(0, 2 * math.pi)),
        sticker=_sticker(rng) or (0.5, 0.4, _jitter_color(rng, (128, 128, 128), 127)),
        noise_seed=int(rng.integers(2**31)),
    )


# ------------------------------------------------------------------------------------------------ drawing


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
    spec, geo = scene.spec, _BODIES[scene.spec.group]
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
