"""Predict step: score new images with a registered model and write predictions.csv in input order.

    finegrain predict --model models:/finegrain-ensemble@champion --images DIR_or_s3://prefix --out predictions.csv

The images are the files under `--images` whose extension is in data.extensions, recursively, sorted by path;
an image's ID is its path under `--images` without the extension (the file stem in a flat folder, like the IDs
of test.csv). Writes `--out` (utf-8-sig, `ID` + the model's submission columns, one row per usable image in
input order, the submission's float format) and `<out stem>.errors.csv` beside it (`ID,path,error`: each image
that could not be read or decoded, with the reason; such an image never stops the batch). `models:/` URIs
resolve against tracking.uri. A progress bar at a terminal; in a pod, a log line every LOG_EVERY batches.
pipelines/predict.py runs the same functions on shards of the list, one pod each.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path, PurePosixPath

import pandas as pd

from finegrain import storage
from finegrain.config import Config
from finegrain.tracking.batch_predict import BatchResult

LOG_EVERY = 20  # batches between progress lines when stderr is not a terminal
ERROR_COLUMNS = ["ID", "path", "error"]


def list_images(images: str, extensions: list[str]) -> tuple[list[str], list[str]]:
    """(IDs, URIs) of the image files under `images` (a directory, an s3:// prefix or one file), by path."""
    root = str(images).rstrip("/") if storage.is_s3(images) else str(Path(images))  # as list_uris spells it
    uris = [u for u in storage.list_uris(root) if PurePosixPath(u).suffix.lower() in {e.lower() for e in extensions}]
    if not uris:
        raise FileNotFoundError(f"{images}: no images ({', '.join(extensions)}) found")
    ids = [_image_id(root, u) for u in uris]
    seen: dict[str, str] = {}
    for image_id, uri in zip(ids, uris):
        if image_id in seen:
            raise ValueError(f"two images would share the ID {image_id!r}: {seen[image_id]} and {uri}")
        seen[image_id] = uri
    return ids, uris


def _image_id(root: str, uri: str) -> str:
    rel = uri[len(root) :].lstrip("/").replace("\\", "/") if uri != root else PurePosixPath(uri).name
    return str(PurePosixPath(rel).with_suffix(""))


class _Progress:
    """tqdm at a terminal; otherwise a line with images/s and ETA every LOG_EVERY batches and at the end."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.done, self.batches = total, desc, 0, 0
        self.started = time.monotonic()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="img")

    def update(self, n: int) -> None:
        self.done += n
        self.batches += 1
        if self.bar is not None:
            self.bar.update(n)
        elif self.batches % LOG_EVERY == 0 or self.done == self.total:
            rate = self.done / max(time.monotonic() - self.started, 1e-9)
            eta = (self.total - self.done) / max(rate, 1e-9)
            print(f"[finegrain] {self.desc}: {self.done}/{self.total} images, {rate:.1f} img/s, ETA {eta:.0f} s",
                  file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def predict_images(cfg: Config, model_uri: str, uris: list[str], desc: str = "predict") -> BatchResult:
    """Load the model once and run it over `uris` in batches of predict.batch_size."""
    from finegrain.tracking.batch_predict import predict_uris
    from finegrain.tracking.registry import load_registered_model

    device = "cuda" if cfg.predict.gpu else "cpu"
    model = load_registered_model(model_uri, cfg.tracking.uri, {"device": device, "batch_size": cfg.predict.batch_size})
    progress = _Progress(len(uris), desc)
    try:
        return predict_uris(model, uris, cfg.predict.batch_size, on_batch=progress.update)
    finally:
        progress.close()


def frames(ids: list[str], uris: list[str], result: BatchResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predictions: ID + columns for every usable image, errors: ID, path, error for the others), in order."""
    ok = result.ok
    predictions = pd.DataFrame(result.probs[ok], columns=result.columns)
    predictions.insert(0, "ID", [i for i, good in zip(ids, ok) if good])
    failed = [(i, u, e) for i, u, e in zip(ids, uris, result.errors) if e]
    return predictions, pd.DataFrame(failed, columns=ERROR_COLUMNS)


def errors_uri(out: str) -> str:
    """Where the list of unusable images goes: beside `out`, named `<out stem>.errors.csv`."""
    head, sep, name = str(out).rpartition("/")
    return f"{head}{sep}{name.rsplit('.', 1)[0] if '.' in name else name}.errors.csv"


def write_predictions(predictions: pd.DataFrame, errors: pd.DataFrame, out: str) -> dict:
    """Write both CSVs (utf-8-sig, the submission's float format); the summary a caller prints."""
    from finegrain.posthoc.submission import FLOAT_FORMAT

    storage.write_bytes(out, predictions.to_csv(index=False, float_format=FLOAT_FORMAT).encode("utf-8-sig"))
    storage.write_bytes(errors_uri(out), errors.to_csv(index=False).encode("utf-8-sig"))
    return {
        "predictions": out, "rows": len(predictions), "errors": errors_uri(out),
        "unreadable": [{"path": p, "error": e} for p, e in zip(errors["path"], errors["error"])],
    }  # fmt: skip


def run(cfg: Config, model: str | None, images: str, out: str) -> dict:
    """Predict every image under `images` with `model` (default: the champion); write `out` and its errors."""
    model = model or f"models:/{cfg.tracking.register_model}@champion"
    ids, uris = list_images(images, cfg.data.extensions)
    result = predict_images(cfg, model, uris)
    predictions, errors = frames(ids, uris, result)
    summary = {"model": model, "images": len(uris), **write_predictions(predictions, errors, out)}
    for path, why in zip(errors["path"], errors["error"]):
        print(f"[finegrain] not predicted: {path}: {why}", file=sys.stderr, flush=True)
    return summary
