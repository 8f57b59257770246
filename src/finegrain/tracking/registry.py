"""The ensemble in the MLflow model registry: logged so it is usable outside the pipeline, and loaded back.

    spec, weights = build_spec(cfg, members, calibration_dir, ensemble_dir, data_uri)
    ref = log_ensemble_model(cfg, spec, weights, parent_run_id)    # "finegrain-ensemble/3", or None
    model = load_registered_model("models:/finegrain-ensemble@champion", cfg.tracking.uri)

What every version carries for a caller outside the pipeline:
- a signature (input: `image` binary, optional `id` and `path`; output: `id`, the submission columns and,
  when some image could not be used, `error`)
  and an `input_example` (one small JPEG), so `mlflow.models.get_model_info` says what to send;
- `pip_requirements` pinned to the versions that logged it (the libraries the model imports, see
  SERVING_MODULES) and the finegrain package itself under `code/` (code_paths), so `mlflow models serve
  --env-manager local`, or a clean virtualenv with those requirements, loads it without installing finegrain;
- each member's weights exactly once (`artifacts/member<i>.pt`): while a model is registered, the train step
  does not log a second copy of model.pt to its member run (finegrain.steps.train).
Aliases and the promotion gate are finegrain.tracking.promotion.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import warnings
from pathlib import Path

from finegrain import storage
from finegrain.config import Config
from finegrain.tracking.mlflow_support import ARTIFACT_TIMEOUT_S, http_settings
from finegrain.tracking.pyfunc import DEFAULT_BATCH_SIZE, ERROR, ID, IMAGE, PATH, EnsembleModel

# Top-level modules the model imports when it loads and predicts; their distributions are pinned.
SERVING_MODULES = (
    "mlflow", "torch", "torchvision", "timm", "numpy", "pandas", "PIL", "scipy", "pydantic", "yaml",
    "albumentations", "cv2", "tqdm",
)  # fmt: skip
MODEL_NAME_IN_RUN = "ensemble"


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
    clash = {ID, ERROR} & set(dataset.submission_columns)
    if clash:
        raise ValueError(f"submission column(s) {sorted(clash)} clash with the served model's own output columns")
    entries, models = [], {}
    for i, member_dir in enumerate(sorted(members)):
        metrics = _read_json(storage.join(member_dir, "metrics.json"))
        key = f"{metrics['backbone']}/fold{metrics['fold']}"
        name = f"member{i}"
        models[name] = storage.join(member_dir, "model.pt")
        entries.append({"key": key, "artifact": name, "weight": ens["member_weights"][key], "calibration": cal[key]})
    spec = {
        "members": entries,
        "post": post_spec(ens, where=storage.join(ensemble_dir, "ensemble.json")),
        "tta": list(cfg.train.tta),
        "columns": list(dataset.submission_columns),
        "column_to_class": dataset.column_to_class(),
        "aliases": dict(cfg.data.aliases),
        "alias_mode": cfg.submit.alias_mode,
        # preprocess's bad-input rules, applied to every served image
        "max_pixels": cfg.preprocess.max_pixels,
        "min_side": cfg.preprocess.min_side,
    }
    return spec, models


def post_spec(ens: dict, where: str = "ensemble.json") -> dict:
    """What the served model applies after the weighted sum, from ensemble.json: the chosen post-processing and
    the prior mix, read from the same record the submission's test_probs.npz was made with."""
    from finegrain.posthoc.prior_mix import PriorMix

    post = {"kind": ens.get("post_processing", "flat")}
    if post["kind"] == "tempered":
        post.update(alpha=1.0, beta=ens["post_tempering"]["power"], groups=None)
    elif post["kind"] == "hierarchical":
        groups = _read_json(ens["hierarchical"]["groups"])["groups"]
        post.update(alpha=ens["hierarchical"]["alpha"], beta=ens["hierarchical"]["beta"], groups=groups)
    if ens.get("prior_mix") is not None:  # absent from ensembles made before the mix existed
        PriorMix.from_dict(ens["prior_mix"], where)  # a broken record fails here, not in the server
        post["prior_mix"] = {k: ens["prior_mix"][k] for k in ("eps", "prior")}
    return post


def model_signature(columns: list[str]):
    """Input: `image` (binary; base64 in JSON), optional `id` and `path`. Output: optional `id`, the columns,
    and `error`, present when some row's image could not be used."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    # `image` is optional only so that a deployment reading server-side files can take `path` instead;
    # predict refuses a row with neither.
    inputs = Schema([
        ColSpec("binary", IMAGE, required=False), ColSpec("string", ID, required=False),
        ColSpec("string", PATH, required=False),
    ])  # fmt: skip
    outputs = Schema([
        ColSpec("string", ID, required=False), *(ColSpec("double", c) for c in columns),
        ColSpec("string", ERROR, required=False),
    ])  # fmt: skip
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example(min_side: int = 1):
    """One small JPEG (large enough for preprocess's min_side) with an id: what a request looks like."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    side = max(64, int(min_side))
    ramp = np.linspace(0, 255, side, dtype=np.uint8)
    pixels = np.stack([np.tile(ramp, (side, 1)), np.tile(ramp[:, None], (1, side)), np.full((side, side), 128, np.uint8)], -1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return pd.DataFrame({IMAGE: [buffer.getvalue()], ID: ["example"]})


def pinned_requirements() -> list[str]:
    """`dist==version` for the distribution of every module in SERVING_MODULES, as installed here."""
    from importlib.metadata import packages_distributions, version

    found = packages_distributions()
    pins = set()
    for module in SERVING_MODULES:
        dists = found.get(module, [])
        for dist in [module] if module in dists else dists:  # mlflow, not mlflow-skinny beside it
            pins.add(f"{dist}=={version(dist)}")
    return sorted(pins)


def stage_code(dst: Path) -> Path:
    """A copy of the installed finegrain package without bytecode, to ship as the model's code_paths."""
    import finegrain

    src = Path(finegrain.__file__).parent
    return Path(shutil.copytree(src, dst / "finegrain", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")))


def log_ensemble_model(
    cfg: Config, spec: dict, models: dict[str, str], parent_run_id: str | None = None
) -> str | None:
    """Log `spec` + the members' weights as the pyfunc and register it; None (and a warning) if MLflow fails.

    A dead or hanging tracking server costs seconds: MLflow's own retry ladder (minutes per call) is off, and
    a cheap call under the short API timeout goes first, before any weights are downloaded or uploaded.
    """
    import mlflow.pyfunc
    from mlflow import MlflowClient

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
            code = stage_code(Path(tmp) / "code")
            # Long timeout: a proxying server answers a weights upload only once it has stored the file.
            with http_settings(ARTIFACT_TIMEOUT_S), mlflow.start_run(**run_kwargs):
                info = mlflow.pyfunc.log_model(
                    name=MODEL_NAME_IN_RUN, python_model=EnsembleModel(), artifacts=artifacts,
                    signature=model_signature(spec.get("columns", [])),
                    input_example=input_example(spec.get("min_side", 1)),
                    pip_requirements=pinned_requirements(), code_paths=[str(code)],
                    model_config={"device": "cpu", "batch_size": DEFAULT_BATCH_SIZE},
                    registered_model_name=cfg.tracking.register_model,
                )  # fmt: skip
        version = info.registered_model_version
        return f"{cfg.tracking.register_model}/{version}"
    except Exception as exc:  # noqa: BLE001 - a registry outage must not fail a finished pipeline
        warnings.warn(f"could not register the ensemble in MLflow ({type(exc).__name__}: {exc})", RuntimeWarning, stacklevel=2)
        return None


def load_registered_model(
    model_uri: str, tracking_uri: str, model_config: dict | None = None, dst_path: str | None = None
):
    """`mlflow.pyfunc.load_model` with `models:/` URIs resolved against this tracking server's registry.

    In a process that already imports finegrain, that finegrain runs the model; the copy under the model's
    `code/` is used where finegrain is not installed.
    """
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    try:
        return mlflow.pyfunc.load_model(model_uri, model_config=model_config, dst_path=dst_path)
    except MlflowException as exc:
        raise ModelLoadError(f"{model_uri}: cannot load the model from {tracking_uri}: {exc.message}") from exc


class ModelLoadError(OSError):
    """A model URI that does not resolve or load (the caller's input, like a missing file)."""
