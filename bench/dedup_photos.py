"""Real photos at Hecto's size (600x450) for the near-duplicate benchmark, from Debian packages.

    originals = real_originals()   # [(name, class, PIL.Image 600x450)], distinct pictures
    apt-get install opencv-doc mate-backgrounds                # where they come from

No data set can be downloaded here, so the photos are the ones two Debian packages ship: OpenCV's sample
pictures (opencv-doc: stereo pairs, the 14-pose calibration boards, video frames of the same scene, everyday
photos) and MATE's nature wallpapers (mate-backgrounds, 1280-2560 px photos). Drawings, logos, renders and
OpenCV's own edited copies (ela_modified, text_defocus/motion) are left out: they are not photos, or they are
copies of another sample.

Each picture becomes 600x450 originals: a small photo is scaled to cover 600x450 and centre-cropped; a wallpaper is
tiled, at its own resolution, into disjoint 600x450 windows (no window is a crop or resize of another). The
"class" of an original is what makes two originals natural look-alikes: the same wallpaper (another part of the
same scene, same light and colours), the same calibration board seen from another pose, the two views of a stereo
pair. Every pair of originals in one class is a look-alike pair a near-duplicate finder must keep apart.

Two frames of one video taken moments apart (BURSTS) are not look-alikes but near-duplicates in the sense the
literature uses (California-ND counts shots of one scene taken moments apart as near-duplicates): at the 128-px
thumbnail the two rubber-whale frames differ in no 8x8 block, less than a q30 re-encode of either. The table
reports them in a row of their own, as neither recall nor false merges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

OPENCV = Path("/usr/share/doc/opencv-doc/examples/data")
MATE = Path("/usr/share/backgrounds/mate/nature")
SIZE = (600, 450)
INSTALL = "apt-get install -y opencv-doc mate-backgrounds"

# OpenCV's photos, by class: pictures in one class are different photos of one scene or object.
_OPENCV_CLASSES = {
    "aero": ["aero1.jpg", "aero3.jpg"],  # one scene from two viewpoints
    "aloe": ["aloeL.jpg", "aloeR.jpg"],  # stereo pair
    "basketball": ["basketball1.png", "basketball2.png"],  # two video frames (BURSTS)
    "box": ["box.png", "box_in_scene.png"],  # the object alone and in a cluttered scene
    "graffiti": ["graf1.png", "graf3.png"],  # one wall from two viewpoints
    "stereo": ["left.jpg", "right.jpg"],
    "leuven": ["leuvenA.jpg", "leuvenB.jpg"],  # one street under two exposures
    "rubberwhale": ["rubberwhale1.png", "rubberwhale2.png"],  # two video frames (BURSTS)
    "calibration": [
        f"{side}{k:02d}.jpg" for side in ("left", "right") for k in range(1, 15) if k != 10
    ],  # 26 poses
    **{
        Path(name).stem: [name]
        for name in (
            "apple.jpg",
            "baboon.jpg",
            "board.jpg",
            "building.jpg",
            "butterfly.jpg",
            "fruits.jpg",
            "home.jpg",
            "licenseplate_motion.jpg",
            "messi5.jpg",
            "orange.jpg",
            "pca_test1.jpg",
            "smarties.png",
            "squirrel_cls.jpg",
            "sudoku.png",
            "HappyFish.jpg",
            "stuff.jpg",
        )
    },  # fmt: skip
}
# Classes whose pictures are frames of one video moments apart: near-duplicates, not look-alikes (docstring).
BURSTS = frozenset({"basketball", "rubberwhale"})
_MIN_STD = (
    12.0  # a wallpaper window this flat (grey levels) is sky or blur: no picture to tell apart, skipped
)


def missing() -> list[str]:
    """The source folders not on this machine (the bench stops with INSTALL when any is)."""
    return [str(p) for p in (OPENCV, MATE) if not p.is_dir()]


def _cover(img: Image.Image) -> Image.Image:
    """Scale to cover SIZE, centre-crop to it."""
    w, h = img.size
    k = max(SIZE[0] / w, SIZE[1] / h)
    img = img.resize((max(SIZE[0], round(w * k)), max(SIZE[1], round(h * k))), Image.Resampling.LANCZOS)
    left, top = (img.width - SIZE[0]) // 2, (img.height - SIZE[1]) // 2
    return img.crop((left, top, left + SIZE[0], top + SIZE[1]))


def _tiles(img: Image.Image) -> list[Image.Image]:
    """Disjoint SIZE windows of a large photo at its own resolution, centred; flat ones left out."""
    w, h = img.size
    nx, ny = w // SIZE[0], h // SIZE[1]
    x0, y0 = (w - nx * SIZE[0]) // 2, (h - ny * SIZE[1]) // 2
    out = []
    for j in range(ny):
        for i in range(nx):
            box = (x0 + i * SIZE[0], y0 + j * SIZE[1], x0 + (i + 1) * SIZE[0], y0 + (j + 1) * SIZE[1])
            tile = img.crop(box)
            if float(np.asarray(tile.convert("L"), dtype=np.float32).std()) >= _MIN_STD:
                out.append(tile)
    return out


def real_originals() -> list[tuple[str, str, Image.Image]]:
    """(name, class, 600x450 RGB image) for every original, in a fixed order."""
    out = []
    for cls, names in _OPENCV_CLASSES.items():
        for name in names:
            out.append((f"cv_{Path(name).stem}", cls, _cover(Image.open(OPENCV / name).convert("RGB"))))
    for path in sorted(MATE.glob("*.jpg")):
        for k, tile in enumerate(_tiles(Image.open(path).convert("RGB"))):
            out.append((f"mate_{path.stem}_{k:02d}", f"mate_{path.stem}", tile))
    return out
