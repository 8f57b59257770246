"""What the preprocess report shows of the manifest: paths relative to the dataset root, and the pictures.

The manifest keeps full URIs (steps read the files through them); a person reading the report wants
`train/<class>/x.jpg`, not where this machine keeps the data. `relative_view` rewrites paths (and the reasons
that name other files) for the report only; `report_thumbnails` makes the thumbnails the HTML page shows: every
duplicate group, confirmed near-duplicate pair, cross-class conflict, suggested merge, noisy label, closest
rejected near-duplicate pair and corrupt file (drawn from whatever part of it decodes, when any does).
"""

from __future__ import annotations

import io
import warnings

import pandas as pd
from PIL import Image, ImageFile

from finegrain import storage
from finegrain.config import Config
from finegrain.data.thumbnails import THUMB_QUALITY, THUMB_SIDE, make_thumbnails, root_name
from finegrain.preprocess.report import ACTIONS_NOTE, checked_note, copy_counts
from finegrain.reports.preprocess_page import preprocess_page

MAX_PICTURES = 1500  # ~6 MB of thumbnails; beyond that the page lists files without pictures
REJECTED_SHOWN = 20  # closest rejected near-duplicate pairs in the report


def relative(root: str, text: str) -> str:
    """`text` with every `<root>/` removed (a path, or a reason that names other files)."""
    prefix = str(root).rstrip("/") + "/"
    return str(text).replace(prefix, "") if root else str(text)


def relative_view(
    manifest: pd.DataFrame, conflicts: list[dict], noisy: list[dict], root: str
) -> tuple[pd.DataFrame, list[dict], list[dict]]:
    """Copies of the manifest, the conflicts and the noisy labels with paths relative to `root`."""
    shown = manifest.copy()
    shown["path"] = [relative(root, p) for p in shown["path"]]
    shown["reason"] = [relative(root, r) for r in shown["reason"]]
    conflicts = [{**c, "paths": [relative(root, p) for p in c["paths"]]} for c in conflicts]
    noisy = [{**n, "path": relative(root, n["path"])} for n in noisy]
    return shown, conflicts, noisy


def pictured_rows(manifest: pd.DataFrame, pairs: pd.DataFrame, suggestions: list[dict]) -> list[int]:
    """Manifest rows the page shows a picture of, most telling first, at most MAX_PICTURES."""
    rows: list[int] = []
    status = manifest["status"]
    rows += manifest.index[status.isin(["cross_class_conflict", "noisy"])].tolist()
    merged = {s["alias"] for s in suggestions} | {s["canonical"] for s in suggestions}
    grouped = manifest[manifest["dup_group"] >= 0]
    rows += grouped.index[grouped["class_name"].isin(merged)].tolist()
    rows += grouped.sort_values(["dup_group"]).index.tolist()
    if len(pairs):
        confirmed = pairs[pairs["same"]]  # same_fold pairs are in no duplicate group
        rows += [int(i) for ab in zip(confirmed["a"], confirmed["b"]) for i in ab]
        closest = pairs[~pairs["same"]].sort_values("similarity", ascending=False).head(REJECTED_SHOWN)
        rows += [int(i) for ab in zip(closest["a"], closest["b"]) for i in ab]
    return list(dict.fromkeys(rows))[:MAX_PICTURES]


def partial_thumbnail(data: bytes, side: int = THUMB_SIDE) -> bytes | None:
    """A thumbnail of whatever part of a corrupt file decodes (a truncated JPEG shows its top), else None.

    PIL's truncated-image switch is module-wide, so this runs on the caller's thread only, for the few corrupt
    files, and puts the switch back."""
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > 40_000_000:
                return None
            img.draft("RGB", (side, side))
            img = img.convert("RGB")
            img.thumbnail((side, side))
    except Exception:  # noqa: BLE001 - nothing decodes: the page shows the reason alone
        return None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=THUMB_QUALITY)
    return out.getvalue()


def report_thumbnails(
    manifest: pd.DataFrame, pairs: pd.DataFrame, suggestions: list[dict], max_pixels: int
) -> dict[str, bytes]:
    """{path (as in the manifest): JPEG thumbnail} of the rows the page pictures, corrupt files included."""
    rows = pictured_rows(manifest, pairs, suggestions)
    thumbs = make_thumbnails(manifest.loc[rows, "path"], max_pixels=max_pixels)
    for path in manifest.loc[manifest["status"] == "corrupt", "path"].head(MAX_PICTURES):
        try:
            partial = partial_thumbnail(storage.read_bytes(path))
        except OSError:
            partial = None
        if partial is not None:
            thumbs[path] = partial
    return thumbs


def render_page(
    manifest: pd.DataFrame,
    ds,
    pairs: pd.DataFrame,
    conflicts: list[dict],
    suggestions: list[dict],
    noisy: list[dict],
    balance: pd.DataFrame,
    fold_warnings: list[str],
    cfg: Config,
) -> str:
    """report.html: the arguments of `render_report` (full paths), shown relative to the dataset root with
    thumbnails (finegrain.reports.preprocess_page)."""
    pp = cfg.preprocess
    thumbs = report_thumbnails(manifest, pairs, suggestions, pp.max_pixels)
    shown, conflicts, noisy = relative_view(manifest, conflicts, noisy, ds.root)
    train = manifest[manifest["split"] == "train"]
    n_classes = shown.loc[shown["class_name"] != "", "class_name"].nunique()
    summary = (
        f"Dataset {root_name(ds.root)} ({ds.layout} layout): {len(train)} train and "
        f"{int((manifest['split'] == 'test').sum())} test images, {len(ds.classes)} classes before merges, "
        f"{n_classes} after. Files skipped (not images / not listed): {len(ds.skipped)}. Rows used for training "
        f"(status ok, with a fold): {int((manifest['fold'] >= 0).sum())}. Paths are relative to the dataset root."
    )
    if not pp.noise_oof:
        noise = "Not checked (preprocess.noise_oof not set)."
    else:
        noise = f"{len(noisy)} flagged by {pp.noise_method} on {pp.noise_oof} (excluded from training)."
    info = {
        "summary": summary, "candidates": checked_note(pairs, cfg), "aliases": dict(cfg.data.aliases) or "none",
        "kinds": copy_counts(manifest, pairs, pp.near_duplicate_action),
        "actions_note": ACTIONS_NOTE,
        "merges_applied": pp.apply_suggested_merges, "noise": noise, "rejected_shown": REJECTED_SHOWN,
        "folds": f"{cfg.data.folds} folds, seed {cfg.data.seed}",
    }  # fmt: skip
    pictures = {relative(ds.root, p): t for p, t in thumbs.items()}
    return preprocess_page(
        info, shown, pairs, conflicts, suggestions, noisy, balance, fold_warnings, pictures
    )
