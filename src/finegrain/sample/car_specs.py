"""The sample's classes and what a picture of one is made of: coarse groups (makes), fine classes (model years).

A group fixes the body silhouette, wheel base and colour palette; a class within the group varies the fine
details -- grille pattern, lamp shape, side stripe, roof colour, wheel style -- the way model years of one make
differ. A `Scene` holds every random choice of one picture (pose, colours, background, lighting, noise), so a
picture can be re-rendered exactly or with only its small details changed (`vary_details`); `synthetic_cars`
draws it.

    spec = CarSpec(group="sedan", grille="mesh", lamp="slim", stripe="none", roof="black", wheel="multi")
    scene = sample_scene(spec, np.random.default_rng(0))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

# Per group: lower body box, cabin polygon, wheel centres/radius, palette. The silhouette tells makes apart.
BODIES = {
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
GROUPS = tuple(BODIES)
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


# Submission column order: grouped by make as a scorer's list might be, deliberately NOT alphabetical.
CLASS_SPECS: dict[str, CarSpec] = {
    "소나타_DN8_2020_2023": CarSpec("sedan", "mesh", "slim", "none", "black", "multi"),
    "소나타_LF_2017_2019": CarSpec("sedan", "bars", "rect", "none", "body", "spokes5"),
    "아반떼_CN7_2021_2023": CarSpec("sedan", "mesh", "slim", "single", "body", "twotone"),
    "그랜저_IG_2017_2019": CarSpec("sedan", "vertical", "round", "double", "black", "solid"),
    "스포티지_5세대_2021_2023": CarSpec("suv", "mesh", "slim", "low", "black", "multi"),
    "뉴_스포티지_2021_2023": CarSpec("suv", "mesh", "slim", "low", "black", "multi"),  # alias: same generator
    "쏘렌토_MQ4_2021_2023": CarSpec("suv", "vertical", "rect", "none", "body", "spokes5"),
    "셀토스_2020_2022": CarSpec("suv", "bars", "round", "single", "black", "twotone"),
    "G80_RG3_2021_2024": CarSpec("luxury", "mesh", "slim", "none", "body", "multi"),
    "G70_2019_2021": CarSpec("luxury", "mesh", "rect", "double", "body", "spokes5"),
    "EQ900_2016_2018": CarSpec("luxury", "vertical", "round", "none", "black", "solid"),
    "모닝_JA_2018_2020": CarSpec("hatch", "bars", "round", "single", "body", "solid"),
    "레이_2018_2022": CarSpec("hatch", "solid", "rect", "none", "black", "spokes5"),
    "캐스퍼_2022_2024": CarSpec("hatch", "mesh", "round", "double", "black", "twotone"),
    "스타리아_2022_2024": CarSpec("van", "solid", "slim", "none", "body", "multi"),
    "카니발_KA4_2021_2023": CarSpec("van", "vertical", "rect", "low", "black", "spokes5"),
}
ALIASES = {
    "뉴_스포티지_2021_2023": "스포티지_5세대_2021_2023"
}  # {alias: canonical}; configs/sample.yaml matches


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
    palette = BODIES[spec.group]["palette"]
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
