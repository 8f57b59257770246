"""The trained ensemble as an MLflow pyfunc model: images in, submission columns out.

Input, a DataFrame with
  image  the encoded file (JPEG, PNG, ...): base64 text, as a JSON request carries it (`dataframe_split` or
         `dataframe_records`; the signature types the column `binary`, so MLflow's scoring server decodes the
         base64 before `predict`), or raw bytes from Python;
  id     optional, echoed back.
Output, one row per input row in the same order: `id` (when given), exactly the sample submission's columns,
and, when any row's image cannot be used, `error`: "" for a scored row; for the others, why (the decoder and
limits preprocess applies: decompression-bomb pixel limit, minimum side, unreadable or non-image data), with
their probabilities left empty (None: null in JSON). One bad image never fails the other rows, and a batch of
good images gets the submission's columns alone, as callers got before bad images had rows of their own.

Server-side files are never read, unless the deployment sets FINEGRAIN_SERVE_PATH_ROOT to one local directory:
then a row may carry `path` (relative to that directory, or absolute inside it) instead of `image`.

Inside, `predict` repeats what the pipeline did for the test set: each member's eval preset and TTA views, its
calibration, the backbone weights, the chosen post-processing (flat power or hierarchical tempering), the mix
with the class prior (ensemble.json's prior_mix, the eps the submission was made with) and the alias split.
Logged and registered by finegrain.tracking.registry (the register step).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

import numpy as np

try:  # mlflow is a dependency of the package, but keep import-time side effects out of `import finegrain`
    import mlflow.pyfunc

    _PythonModel = mlflow.pyfunc.PythonModel
except ImportError:  # pragma: no cover - images without mlflow cannot register, but can still import this
    _PythonModel = object

IMAGE, ID, PATH, ERROR = "image", "id", "path", "error"
PATH_ROOT_ENV = "FINEGRAIN_SERVE_PATH_ROOT"
DEFAULT_BATCH_SIZE = 32


class EnsembleModel(_PythonModel):
    """pyfunc: images -> probabilities over the submission columns (plus `id` and `error`)."""

    # model_config keys (mlflow.pyfunc.load_model(uri, model_config={...})): where the members run, and how
    # many images go through a member at once (bounds memory for a large request).
    device = "cpu"
    batch_size = DEFAULT_BATCH_SIZE

    def load_context(self, context) -> None:
        import torch

        from finegrain.config import config_from_dict
        from finegrain.models import build_model
        from finegrain.posthoc.calibration import scaler_from_dict

        config = dict(getattr(context, "model_config", None) or {})
        self.device = str(config.get("device", self.device))
        self.batch_size = int(config.get("batch_size", self.batch_size))
        self.spec = json.loads(Path(context.artifacts["spec"]).read_text(encoding="utf-8"))
        self.members = []
        for entry in self.spec["members"]:
            blob = torch.load(context.artifacts[entry["artifact"]], map_location="cpu", weights_only=True)
            mcfg = config_from_dict(blob["config"])
            backbone = mcfg.train.backbone(blob["backbone"]).model_copy(update={"pretrained": False})
            model = build_model(backbone, mcfg.train.head, blob["num_classes"])
            model.load_state_dict(blob["state_dict"])
            model.to(self.device).eval()
            scaler = scaler_from_dict(entry["calibration"], where=entry["key"])
            self.members.append((entry, blob, model, scaler))
        self.classes = list(self.members[0][1]["classes"])

    def _member_logits(self, blob: dict, model, images: list[np.ndarray]) -> np.ndarray:
        import torch

        from finegrain.data.loader import resize_short_side
        from finegrain.data.transforms import EvalPreset, tta_view

        # The same path as the pipeline's test predictions: the cache's resize, then the eval preset.
        train = blob["config"]["train"]
        short_side = round(train["cache_scale"] * blob["image_size"])
        preset = EvalPreset(
            blob["image_size"], blob["mean"], blob["std"], normalize=True, resize=train["eval_resize"]
        )
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            batch = torch.stack([preset(resize_short_side(im, short_side)) for im in chunk]).to(self.device)
            with torch.no_grad():
                views = [model(tta_view(batch, v)).float() for v in self.spec["tta"]]
            out.append(torch.stack(views).mean(0).cpu().numpy())
        return np.concatenate(out)

    def predict_proba(self, images: list[np.ndarray]) -> np.ndarray:
        """Ensemble probabilities over the canonical classes, [n, C]."""
        probs = np.zeros((len(images), len(self.classes)))
        for entry, blob, model, scaler in self.members:
            probs += entry["weight"] * scaler.transform(self._member_logits(blob, model, images))
        return apply_post(self.spec["post"], probs, self.classes)

    def predict(self, context, model_input, params=None):
        import pandas as pd

        from finegrain.data.decode import UndecodableImageError, decode_image
        from finegrain.posthoc.submission import probs_to_columns

        blobs, errors = row_bytes(model_input, os.environ.get(PATH_ROOT_ENV) or None)
        images: dict[int, np.ndarray] = {}
        for i, data in enumerate(blobs):
            if errors[i]:
                continue
            try:
                # The decoder and limits preprocess judged the training images with (0 = no limit, for a
                # model logged before the limits were recorded).
                images[i] = decode_image(
                    data, f"row {i}", self.spec.get("max_pixels") or None, self.spec.get("min_side", 1)
                )
            except UndecodableImageError as exc:
                errors[i] = str(exc)
        columns = list(self.spec["columns"])
        probs = np.full((len(blobs), len(columns)), np.nan)
        if images:
            rows = sorted(images)
            probs[rows] = probs_to_columns(
                self.predict_proba([images[i] for i in rows]), self.classes, columns,
                self.spec["column_to_class"], self.spec["aliases"], self.spec["alias_mode"],
            )  # fmt: skip
        out = pd.DataFrame(probs, columns=columns)
        if len(images) < len(blobs):
            # None, not NaN: the scoring server's JSON then says null, which every JSON parser reads (NaN is
            # not JSON, and one unusable image would make a strict client reject the whole reply).
            out = out.astype(object)
            out.loc[[i for i, why in enumerate(errors) if why], columns] = None
        if ID in model_input.columns:
            out.insert(0, ID, list(model_input[ID]))
        if len(images) < len(blobs):
            out[ERROR] = errors
        return out


def apply_post(post: dict, probs: np.ndarray, classes: list[str]) -> np.ndarray:
    """The ensemble step's post-processing, then its prior mix (finegrain.tracking.registry.post_spec), on the
    weighted sum of calibrated members: what the step did to make the submission's test_probs.npz."""
    from finegrain.posthoc.ensembling import HierarchicalTempering, groups_to_index
    from finegrain.posthoc.prior_mix import PriorMix

    if post["kind"] in ("tempered", "hierarchical"):
        group_of = (
            np.zeros(len(classes), dtype=np.int64)
            if post["groups"] is None
            else groups_to_index(post["groups"], classes)
        )
        tempering = HierarchicalTempering(group_of)
        tempering.alpha_, tempering.beta_ = post["alpha"], post["beta"]
        probs = tempering.transform(probs)
    probs = probs / probs.sum(axis=1, keepdims=True)
    if post.get("prior_mix"):
        probs = PriorMix.from_dict(post["prior_mix"], "the model's spec").transform(probs)
    return probs


def row_bytes(frame, path_root: str | None) -> tuple[list[bytes | None], list[str]]:
    """Each row's encoded image and "" -- or None and why the row has none; a malformed request raises."""
    if IMAGE not in frame.columns and PATH not in frame.columns:
        raise ValueError(
            f"model input needs a column '{IMAGE}' (the encoded image, base64 in JSON); got {list(frame.columns)}"
        )
    paths = frame[PATH] if PATH in frame.columns else None
    if paths is not None and paths.notna().any() and not path_root:
        raise ValueError(
            f"column '{PATH}': this deployment reads no server-side files; send the image itself in column "
            f"'{IMAGE}' (base64 in JSON), or set {PATH_ROOT_ENV} on the server to allow one directory"
        )
    images = frame[IMAGE] if IMAGE in frame.columns else None
    blobs: list[bytes | None] = []
    errors: list[str] = []
    for i in range(len(frame)):
        value = images.iloc[i] if images is not None else None
        path = paths.iloc[i] if paths is not None else None
        try:
            if _present(value):
                blobs.append(image_bytes(value))
            elif _present(path):
                blobs.append(read_under(path_root, str(path)))
            else:
                raise ValueError(f"no image (column '{IMAGE}' is empty)")
            errors.append("")
        except (ValueError, OSError) as exc:
            blobs.append(None)
            errors.append(f"row {i}: {exc}")
    return blobs, errors


def _present(value) -> bool:
    if value is None:
        return False
    return not (isinstance(value, float) and np.isnan(value))


def image_bytes(value) -> bytes:
    """Raw bytes as they are; text as base64 (whitespace and a `data:...;base64,` prefix allowed)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        text = value.split("base64,", 1)[1] if value.startswith("data:") and "base64," in value else value
        try:
            return base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"image is not valid base64 ({exc})") from None
    raise ValueError(f"image must be base64 text or bytes, not {type(value).__name__}")


def read_under(root: str, path: str) -> bytes:
    """The bytes of `path` if it resolves (links followed) inside `root`; anything else is refused."""
    base = os.path.realpath(root)
    target = os.path.realpath(os.path.join(base, path))
    if os.path.commonpath([base, target]) != base:
        raise ValueError(f"path {path!r} is outside {PATH_ROOT_ENV}")
    try:
        return Path(target).read_bytes()
    except OSError as exc:  # the caller learns why, not where the server keeps its files
        raise ValueError(f"cannot read path {path!r}: {exc.strerror or type(exc).__name__}") from None
