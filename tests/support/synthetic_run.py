"""Every page the pipeline writes, made without training: for checking pages in a browser at any class count.

    pages = synthetic_pages(tmp_path, n_classes=396, n_per_class=84)   # {name: path of the HTML page}

The post-training steps (regroup, calibrate, ensemble) run for real on synthetic members (tests.support.
synthetic_members) whose image ids point at a small generated ImageFolder dataset through a manifest, so the
error pages have thumbnails; the preprocess step runs for real on that dataset, with planted problems (copies
within a class, the same picture in two classes, a class that is mostly another's pictures, corrupt files); a
member's own page (errors.html) is made from one member's OOF logits as the train step makes it.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from finegrain.config import config_from_dict
from finegrain.metrics import softmax
from finegrain.posthoc.members import load_member
from finegrain.steps import calibrate, ensemble, preprocess, regroup
from finegrain.steps.error_page import error_page
from tests.support.synthetic_members import make_members

BRANDS = ("현대", "기아", "제네시스", "쉐보레", "르노", "BMW", "벤츠", "아우디", "볼보", "토요타", "렉서스")


def class_names(n: int) -> list[str]:
    """Car-like class names (Korean brands, a model, a generation's years), unique and sorted like Hecto's."""
    names = [f"{BRANDS[i % len(BRANDS)]}_모델{i:03d}_{2010 + i % 12}_{2012 + i % 12}" for i in range(n)]
    return sorted(names)


def _picture(rng: np.random.Generator, size: tuple[int, int] = (128, 96)) -> bytes:
    """A distinct little picture: a coloured background with random shapes (distinct perceptual hashes)."""
    img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(40, 220, 3)))
    d = ImageDraw.Draw(img)
    for _ in range(6):
        x, y = rng.integers(0, size[0]), rng.integers(0, size[1])
        w, h = rng.integers(10, 60), rng.integers(10, 50)
        box = (int(x), int(y), int(x + w), int(y + h))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)(box, fill=colour)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=85)
    return out.getvalue()


def make_dataset(root: Path, classes: list[str], seed: int = 0, max_per_class: int = 12, min_per_class: int = 3) -> Path:
    """An ImageFolder dataset (train/<class>/, test/) with planted problems; returns its root.

    min_per_class: at least data.folds, or preprocess refuses the set (every fold must see every class)."""
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    for name in classes:
        for j in range(int(rng.integers(min_per_class, max(max_per_class, min_per_class) + 1))):
            files[f"train/{name}/{name}_{j:03d}.jpg"] = _picture(rng)
    keys = list(files)
    for j in range(min(8, len(classes))):  # copies inside a class
        files[keys[j * 3].replace(".jpg", "_copy.jpg")] = files[keys[j * 3]]
    for j in range(min(4, len(classes) // 2)):  # the same picture under two classes
        src = f"train/{classes[2 * j]}/{classes[2 * j]}_000.jpg"
        files[f"train/{classes[2 * j + 1]}/conflict_{j}.jpg"] = files[src]
    if len(classes) > 3:  # most of the last class's pictures are also the first class's: a suggested merge
        a, b = classes[-1], classes[0]
        for j, rel in enumerate(r for r in keys if r.startswith(f"train/{a}/")):
            files[f"train/{b}/shared_{j}.jpg"] = files[rel]
    good = files[keys[0]]
    files[f"train/{classes[1]}/truncated.jpg"] = good[: len(good) // 2]
    files[f"train/{classes[2]}/empty.jpg"] = b""
    files[f"train/{classes[3 % len(classes)]}/not_an_image.jpg"] = b"this is text, not a JPEG"
    for j in range(20):
        files[f"test/test_{j:03d}.jpg"] = _picture(rng)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _manifest(root: Path, members: list[str], images: list[str]) -> Path:
    """A manifest.parquet mapping every synthetic member's image id to one of the dataset's pictures."""
    ids = sorted({str(i) for u in members for i in load_member(u).oof_ids})
    table = pd.DataFrame({"image_id": ids, "path": [images[k % len(images)] for k in range(len(ids))]})
    out = root / "manifest"
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / "manifest.parquet", index=False)
    return out


def synthetic_pages(
    root: Path, n_classes: int = 396, n_per_class: int = 30, folds: int = 5
) -> dict[str, Path]:
    """Run preprocess, regroup, calibrate and ensemble on synthetic data under `root`; returns
    {page name: HTML path} and prints how long each part took."""
    root = Path(root)
    classes = class_names(n_classes)
    cfg = config_from_dict({
        "data": {"folds": folds}, "preprocess": {"workers": 2}, "tracking": {"enabled": False},
        "regroup": {"perplexity": 30 if n_classes * n_per_class > 3000 else 10, "pca_dims": 16},
    })  # fmt: skip
    times = {}
    t = time.perf_counter()
    data = make_dataset(root / "data", classes, min_per_class=folds)
    preprocess.run(cfg, str(data), str(root / "preprocess"))
    times["preprocess"] = time.perf_counter() - t
    t = time.perf_counter()
    members = make_members(root, n_classes=n_classes, n_per_class=n_per_class, backbones=("convnext", "effnet"),
                           folds=folds, classes=classes, embedding_dim=32)  # fmt: skip
    images = sorted(str(p) for p in (data / "train").rglob("*_0*.jpg"))
    manifest = _manifest(root, members, images)
    times["members"] = time.perf_counter() - t
    for step, run in (("regroup", regroup.run), ("calibrate", calibrate.run)):
        t = time.perf_counter()
        run(cfg, members, str(root / step))
        times[step] = time.perf_counter() - t
    t = time.perf_counter()
    ensemble.run(cfg, members, str(root / "calibrate"), str(root / "ensemble"), groups=str(root / "regroup"),
                 manifest=str(manifest))  # fmt: skip
    times["ensemble"] = time.perf_counter() - t
    t = time.perf_counter()
    member = load_member(members[0])
    paths = pd.read_parquet(manifest / "manifest.parquet").set_index("image_id")["path"].to_dict()
    page, _ = error_page(softmax(member.oof_logits), member.oof_labels, member.oof_ids.tolist(), member.classes,
                         f"{member.key}: validation fold (synthetic)", paths=paths,
                         title=f"Error analysis: {member.key} (validation fold)")  # fmt: skip
    (root / "member").mkdir(exist_ok=True)
    (root / "member" / "errors.html").write_text(page, encoding="utf-8")
    times["member page"] = time.perf_counter() - t
    print(f"synthetic run, {n_classes} classes, {n_classes * n_per_class} OOF images: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()), flush=True)  # fmt: skip
    return {
        "preprocess": root / "preprocess" / "report.html",
        "train": root / "member" / "errors.html",
        "regroup": root / "regroup" / "tsne.html",
        "calibrate": root / "calibrate" / "calibration.html",
        "ensemble": root / "ensemble" / "error_analysis.html",
    }
