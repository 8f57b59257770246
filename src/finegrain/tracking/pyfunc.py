"""The trained ensemble as an MLflow pyfunc model: images in, submission columns out.

`predict` takes a DataFrame with a column `image` (encoded bytes) or `path` (local file) and returns one row per
image with exactly the sample submission's columns. Inside, it repeats what the pipeline did for the test set:
each member's eval preset and TTA views, its calibration, the backbone weights, the chosen post-processing
(flat power or hierarchical tempering) and the alias split. Registered by the register step
(finegrain.steps.register) as `tracking.register_model`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from finegrain import storage
from finegrain.config import Config

try:  # mlflow is a dependency of the package, but keep import-time side effects out of `import finegrain`
    import mlflow.pyfunc

    _PythonModel = mlflow.pyfunc.PythonModel
except ImportError:  # pragma: no cover - images without mlflow cannot register, but can still import this
    _PythonModel = object


def _read_json(uri: str) -> dict:
    return json.loads(storage.read_text(uri))


def build_spec(
    cfg: Config, members: list[str], calibration_dir: str, ensemble_dir: str, data_uri: str
) -> tuple[dict, dict[str, str]]:
    """Everything `predict` needs, as JSON, plus {artifact name: model.pt URI} for each member."""
    from finegrain.data.layouts import read_dataset

    ens = _read_json(storage.join(ensemble_dir, "ensemble.json"))
    cal = _read_json(storage.join(calibration_dir, "calibration.json"))
    dataset = read_dataset(data_uri, cfg.data.layout)
    entries, models = [], {}
    for i, member_dir in enumerate(sorted(members)):
        metrics = _read_json(storage.join(member_dir, "metrics.json"))
        key = f"{metrics['backbone']}/fold{metrics['fold']}"
        name = f"member{i}"
        models[name] = storage.join(member_dir, "model.pt")
        entries.append({"key": key, "artifact": name, "weight": ens["member_weights"][key], "calibration": cal[key]})
    post = {"kind": ens.get("post_processing", "flat")}
    if post["kind"] == "tempered":
        post.update(alpha=1.0, beta=ens["post_tempering"]["power"], groups=None)
    elif post["kind"] == "hierarchical":
        groups = _read_json(ens["hierarchical"]["groups"])["groups"]
        post.update(alpha=ens["hierarchical"]["alpha"], beta=ens["hierarchical"]["beta"], groups=groups)
    spec = {
        "members": entries,
        "post": post,
        "tta": list(cfg.train.tta),
        "columns": list(dataset.submission_columns),
        "column_to_class": dataset.column_to_class(),
        "aliases": dict(cfg.data.aliases),
        "alias_mode": cfg.submit.alias_mode,
    }
    return spec, models


class EnsembleModel(_PythonModel):
    """pyfunc: images -> probabilities over the submission columns."""

    def load_context(self, context) -> None:
        import torch

        from finegrain.config import config_from_dict
        from finegrain.models import build_model
        from finegrain.posthoc.calibration import scaler_from_dict

        self.spec = json.loads(Path(context.artifacts["spec"]).read_text(encoding="utf-8"))
        self.members = []
        for entry in self.spec["members"]:
            blob = torch.load(context.artifacts[entry["artifact"]], map_location="cpu", weights_only=True)
            mcfg = config_from_dict(blob["config"])
            backbone = mcfg.train.backbone(blob["backbone"]).model_copy(update={"pretrained": False})
            model = build_model(backbone, mcfg.train.head, blob["num_classes"])
            model.load_state_dict(blob["state_dict"])
            model.eval()
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
        batch = torch.stack([preset(resize_short_side(im, short_side)) for im in images])
        with torch.no_grad():
            views = [model(tta_view(batch, v)).float() for v in self.spec["tta"]]
        return torch.stack(views).mean(0).numpy()

    def predict_proba(self, images: list[np.ndarray]) -> np.ndarray:
        """Ensemble probabilities over the canonical classes, [n, C]."""
        from finegrain.posthoc.ensembling import HierarchicalTempering, groups_to_index

        probs = np.zeros((len(images), len(self.classes)))
        for entry, blob, model, scaler in self.members:
            probs += entry["weight"] * scaler.transform(self._member_logits(blob, model, images))
        post = self.spec["post"]
        if post["kind"] in ("tempered", "hierarchical"):
            group_of = (
                np.zeros(len(self.classes), dtype=np.int64)
                if post["groups"] is None
                else groups_to_index(post["groups"], self.classes)
            )
            tempering = HierarchicalTempering(group_of)
            tempering.alpha_, tempering.beta_ = post["alpha"], post["beta"]
            probs = tempering.transform(probs)
        return probs / probs.sum(axis=1, keepdims=True)

    def predict(self, context, model_input, params=None):
        import pandas as pd

        from finegrain.data.decode import decode_image
        from finegrain.posthoc.submission import probs_to_columns

        # The decoder preprocess validated with and the training cache used: same pixels for the same file.
        images = [decode_image(data, f"row {i}") for i, data in enumerate(_images_of(model_input))]
        columns = probs_to_columns(
            self.predict_proba(images), self.classes, self.spec["columns"], self.spec["column_to_class"],
            self.spec["aliases"], self.spec["alias_mode"],
        )
        return pd.DataFrame(columns, columns=self.spec["columns"])


def _images_of(frame) -> list:
    if "image" in frame.columns:
        return list(frame["image"])
    if "path" in frame.columns:
        return [Path(p).read_bytes() for p in frame["path"]]
    raise ValueError(f"model input needs a column 'image' (bytes) or 'path'; got {list(frame.columns)}")


def register_ensemble(
    cfg: Config, members: list[str], calibration_dir: str, ensemble_dir: str, data_uri: str,
    parent_run_id: str | None = None,
) -> str | None:
    """Log the ensemble as a pyfunc under the parent run and register it; returns "name/version" or None."""
    spec, models = build_spec(cfg, members, calibration_dir, ensemble_dir, data_uri)
    return log_ensemble_model(cfg, spec, models, parent_run_id)


def log_ensemble_model(
    cfg: Config, spec: dict, models: dict[str, str], parent_run_id: str | None = None
) -> str | None:
    """Log `spec` + the members' weights as the pyfunc and register it; None (and a warning) if MLflow fails.

    A dead or hanging tracking server costs seconds: MLflow's own retry ladder (minutes per call) is off, and
    a cheap call under the short API timeout goes first, before any weights are downloaded or uploaded.
    """
    import warnings

    from mlflow import MlflowClient

    from finegrain.tracking.mlflow_support import ARTIFACT_TIMEOUT_S, http_settings

    try:
        client = MlflowClient(tracking_uri=cfg.tracking.uri)
        with http_settings():
            if parent_run_id:
                client.get_run(parent_run_id)
                run_kwargs = {"run_id": parent_run_id}
            else:
                exp = client.get_experiment_by_name(cfg.tracking.experiment)
                exp_id = exp.experiment_id if exp else client.create_experiment(cfg.tracking.experiment)
                run_kwargs = {"run_name": "ensemble-model", "experiment_id": exp_id}
        mlflow.set_tracking_uri(cfg.tracking.uri)  # log_model has no client argument; set just before use
        with tempfile.TemporaryDirectory() as tmp:
            artifacts = {"spec": str(Path(tmp) / "spec.json")}
            Path(artifacts["spec"]).write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
            for name, uri in models.items():
                artifacts[name] = str(storage.download_file(uri, Path(tmp) / f"{name}.pt"))
            # Long timeout: a proxying server answers a weights upload only once it has stored the file.
            with http_settings(ARTIFACT_TIMEOUT_S), mlflow.start_run(**run_kwargs):
                info = mlflow.pyfunc.log_model(
                    name="ensemble", python_model=EnsembleModel(), artifacts=artifacts,
                    registered_model_name=cfg.tracking.register_model,
                )
        version = info.registered_model_version
        return f"{cfg.tracking.register_model}/{version}"
    except Exception as exc:  # noqa: BLE001 - a registry outage must not fail a finished pipeline
        warnings.warn(f"could not register the ensemble in MLflow ({type(exc).__name__}: {exc})", RuntimeWarning, stacklevel=2)
        return None
