"""Run a loaded ensemble pyfunc over many stored images in batches: one result row per image, in input order.

    result = predict_uris(model, uris, batch_size=32, on_batch=bar.update)
    result.probs      # [n, columns] (NaN rows where result.errors[i] != "")

Each file is read here (local or s3://, a few at a time) and sent to the model as bytes, so the model never
reads files itself. A file that cannot be read, or that the model refuses (its `error` column: not an image,
truncated, over the pixel limit, ...), gets its reason in `errors` and no probabilities; the batch goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from finegrain import storage
from finegrain.tracking.pyfunc import ERROR, ID, IMAGE

READ_THREADS = 8  # S3 reads are latency-bound: a few in flight keep the model busy


@dataclass
class BatchResult:
    columns: list[str]  # the model's submission columns, in its order
    probs: np.ndarray  # [n, len(columns)]; NaN where the image could not be used
    errors: list[str]  # "" for a scored image, else why not

    @property
    def ok(self) -> np.ndarray:
        return np.array([not e for e in self.errors], dtype=bool)


def model_columns(model) -> list[str]:
    """The submission columns a loaded ensemble pyfunc returns (from its spec)."""
    return list(model.unwrap_python_model().spec["columns"])


def _read(uri: str) -> tuple[bytes | None, str]:
    try:
        return storage.read_bytes(uri), ""
    except (OSError, storage.StorageError) as exc:
        return None, f"cannot read {uri}: {type(exc).__name__}: {exc}"


def predict_uris(
    model, uris: Sequence[str], batch_size: int = 32, on_batch: Callable[[int], object] | None = None
) -> BatchResult:
    """The model's columns for every file in `uris`; `on_batch(n)` after each batch of n files."""
    columns = model_columns(model)
    probs = np.full((len(uris), len(columns)), np.nan)
    errors = [""] * len(uris)
    with ThreadPoolExecutor(READ_THREADS) as pool:
        for start in range(0, len(uris), batch_size):
            chunk = list(range(start, min(start + batch_size, len(uris))))
            read = list(pool.map(_read, [uris[i] for i in chunk]))
            sent = [i for i, (data, _) in zip(chunk, read) if data is not None]
            for i, (_, why) in zip(chunk, read):
                errors[i] = why
            if sent:
                import pandas as pd

                frame = pd.DataFrame({IMAGE: [read[i - start][0] for i in sent], ID: [str(i) for i in sent]})
                out = model.predict(frame)
                probs[sent] = out[columns].to_numpy(dtype=np.float64)
                for i, why in zip(sent, out[ERROR] if ERROR in out.columns else [""] * len(sent)):
                    # the model names the row by its place in this batch; the caller knows the file
                    errors[i] = why.split(": ", 1)[1] if why.startswith("row ") else why
            if on_batch is not None:
                on_batch(len(chunk))
    return BatchResult(columns, probs, errors)
