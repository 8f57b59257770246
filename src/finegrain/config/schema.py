"""The config's schema: one pydantic model per section, and `Config`, the whole run's config.

Every section forbids unknown keys and validates on assignment, so a misspelt key or a wrong type is an error
that names the key (`finegrain.config.base`); the train section is in `finegrain.config.train`. Loading and
overrides are in `finegrain.config.files` and `finegrain.config.overrides`.
"""

from __future__ import annotations

from typing import Literal

import yaml
from pydantic import Field, field_validator, model_validator

from finegrain.config.base import _Section
from finegrain.config.copy_kinds import DEFAULT_ACTIONS, Action, complete_actions
from finegrain.config.endpoints import endpoint_problem
from finegrain.config.train import TrainConfig


class DataConfig(_Section):
    uri: str = "data/sample"
    layout: Literal["auto", "hecto", "imagefolder"] = "auto"
    # {alias: canonical}: classes the organisers declared identical; scored as one class by the metric.
    aliases: dict[str, str] = Field(default_factory=dict)
    folds: int = Field(5, ge=2)
    seed: int = 42
    extensions: list[str] = Field(default_factory=lambda: [".jpg", ".jpeg", ".png", ".bmp", ".webp"])


# Settings of the near-duplicate check before issue 21's rewrite: a saved config naming one is told what replaced
# it, not only that the key is unknown.
_REPLACED = {
    "near_dup_distance": "near_dup_neighbours and near_dup_min_correlation (the search ranks each picture's "
    "closest neighbours instead of a pHash distance)",
    "confirm_distance": "confirm_max_changed (the check compares 8x8 blocks instead of a 256-bit DCT hash)",
    "confirm_max_local_diff": "confirm_max_changed and confirm_max_edit",
}


class PreprocessConfig(_Section):
    # The near-duplicate search (dedup/search.py): each picture's closest neighbours by the correlation of 8x8
    # tiny pictures (whole, mirrored, inner crop), this many per picture, at least this correlated.
    near_dup_neighbours: int = Field(2, ge=0, le=16)
    near_dup_min_correlation: float = Field(0.6, ge=-1.0, le=1.0)
    # The check of each candidate (dedup/match.py), on 128-px thumbnails after alignment and grey-level matching:
    # the whole overlap must correlate at least this well...
    confirm_min_similarity: float = Field(0.75, ge=0.0, le=1.0)
    # ...and at most this share of 8x8 blocks may differ (copies of real photos: 95th percentile 0.02; other
    # pictures of the same scene: 0.05 and up)...
    confirm_max_changed: float = Field(0.04, ge=0.0, le=1.0)
    # ...unless the differing blocks form one compact blob covering at most this share of the frame: a local
    # edit (watermark, logo, decal: kind `overlay`).
    confirm_max_edit: float = Field(0.12, ge=0.0, le=1.0)
    max_pixels: int = Field(40_000_000, gt=0)  # decompression-bomb guard
    min_side: int = Field(16, ge=1)
    drop_cross_class_conflicts: bool = True
    # Per kind of copy the check confirms (config/copy_kinds.py: exact, reencode, resize, crop, flip, rotation,
    # photometric, letterbox, exif, overlay): `drop` = a duplicate for training (one representative kept);
    # `same_fold` = every image kept, in the fold of its copies (no leak between folds, and no picture lost if
    # the "copy" was another picture). Default drop, except overlay (only a small region differs: a watermark,
    # or a burst frame or the same car with another decal). A pair of several kinds ("crop+overlay") is dropped
    # only when each of them says drop. Kinds left out keep their default: `{overlay: drop}` changes one.
    near_duplicate_action: dict[str, Action] = Field(default_factory=lambda: dict(DEFAULT_ACTIONS))
    # Suggest merging two classes when at least this fraction of the smaller one is cross-class duplicated.
    suggest_merge_fraction: float = Field(0.5, gt=0.0, le=1.0)
    apply_suggested_merges: bool = False
    # Optional out-of-fold predictions (an ensemble/train output) used to flag noisy labels.
    noise_oof: str | None = None
    noise_method: Literal["loss", "confident_learning"] = "confident_learning"
    noise_threshold: float = Field(0.5, ge=0.0)
    workers: int = Field(2, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _replaced_settings(cls, data: object) -> object:
        if isinstance(data, dict):
            gone = [key for key in data if key in _REPLACED]
            if gone:
                raise ValueError("; ".join(f"{key} is no longer a setting: use {_REPLACED[key]}" for key in gone))
        return data

    @field_validator("near_duplicate_action")
    @classmethod
    def _known_kinds(cls, value: dict[str, str]) -> dict[str, str]:
        return complete_actions(value)


class RegroupConfig(_Section):
    pca_dims: int = Field(50, ge=2)
    perplexity: float = Field(30.0, gt=0.0)
    tsne_backend: Literal["auto", "opentsne", "sklearn"] = "auto"
    # Agglomerative clustering of class centroids: merge classes closer than this (0..1 blended distance).
    distance_threshold: float = Field(0.5, gt=0.0)
    confusion_weight: float = Field(0.5, ge=0.0, le=1.0)
    label_top: int = Field(10, ge=0)  # how many most-confused classes to label on the plot
    seed: int = 0


class CalibrateConfig(_Section):
    method: Literal["temperature", "binned_temperature"] = "temperature"
    ece_bins: int = Field(15, ge=2)
    n_temperature_bins: int = Field(3, ge=1)


class EnsembleConfig(_Section):
    method: Literal["uniform", "inverse_logloss", "optimized"] = "optimized"
    hierarchical: bool = True  # tried, and kept only if it lowers out-of-fold LogLoss


class SubmitConfig(_Section):
    # How an alias column of the sample gets probability mass: "split" halves the canonical probability
    # between the pair (the scorer sums the pair, rows still sum to 1); "duplicate" copies it and renormalises
    # the row, so the scored pair gets 2p/(1+p) and every other class shrinks by 1/(1+p)
    # (see posthoc/submission/frame.py).
    alias_mode: Literal["split", "duplicate"] = "split"
    # Where the file is POSTed with the bearer token: https, or http only to this machine (localhost).
    endpoint: str | None = None
    token_env: str = "FINEGRAIN_SUBMIT_TOKEN"

    @field_validator("endpoint")
    @classmethod
    def _safe_endpoint(cls, value: str | None) -> str | None:
        problem = endpoint_problem(value) if value else ""
        if problem:
            raise ValueError(problem)
        return value or None


class PromotionConfig(_Section):
    # The register step's gate scores the new version (alias challenger) and the current champion on the same
    # labelled images. holdout_uri names a labelled set no member trained on (ImageFolder layout:
    # <uri>/train/<class>/*); None = this run's out-of-fold images (see finegrain.tracking.promotion).
    holdout_uri: str | None = None
    # champion moves only when the challenger's LogLoss is lower by at least this much.
    min_improvement: float = Field(0.01, ge=0.0)
    max_images: int = Field(1000, ge=1)  # gate images; a seeded sample of the set when it is larger


class PredictConfig(_Section):
    batch_size: int = Field(32, ge=1)  # images per model call (and per progress step)
    # pipelines/predict.py: the images are split into shards of this many, one pod each, at most
    # `parallelism` at a time; shard pods run on CPU nodes unless `gpu` (then 1 GPU each, pipeline.base_image).
    images_per_shard: int = Field(2000, ge=1)
    parallelism: int = Field(8, ge=1)
    gpu: bool = False
    cpu: str = "4"
    memory: str = "16Gi"


class TrackingConfig(_Section):
    enabled: bool = True
    # Embedded default: a local SQLite store. On a cluster: http://mlflow.finegrain.svc:5000
    uri: str = "sqlite:///mlruns.db"
    experiment: str = "finegrain"
    artifact_location: str | None = None
    retries: int = Field(3, ge=0)
    register_model: str | None = "finegrain-ensemble"
    # CPU/GPU/memory/network of train tasks as MLflow `system/*` metrics (needs psutil; pynvml for GPUs).
    system_metrics: bool = True


class StorageConfig(_Section):
    # Endpoint and credentials come from the environment (FINEGRAIN_S3_ENDPOINT, AWS_ACCESS_KEY_ID,
    # AWS_SECRET_ACCESS_KEY); only non-secret settings live here.
    retries: int = Field(5, ge=0)
    multipart_threshold_mb: int = Field(64, ge=5)


class PipelineConfig(_Section):
    name: str = "finegrain-training"
    base_image: str = "finegrain:latest-cpu"  # train tasks (the CUDA image on a cluster)
    # Every other task; None = base_image with a "-cuda" tag suffix swapped for "-cpu" (else base_image).
    cpu_image: str | None = None
    parallelism: int = Field(4, ge=1)
    pipeline_root: str = "minio://finegrain-pipelines/root"
    namespace: str = "finegrain"
    # Pipeline pods run as this ServiceAccount (manifests/ binds it to read the S3 Secret).
    service_account: str = "finegrain-pipeline"
    experiment: str = "finegrain"
    s3_secret: str = "finegrain-s3"  # Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    # Optional Secret with key FINEGRAIN_SUBMIT_TOKEN, given to the submit task as submit.token_env.
    submit_token_secret: str = "finegrain-submit"
    s3_endpoint: str = "minio.finegrain.svc.cluster.local:9000"
    # Where steps write: each task's outputs under <work_root>/<task>/<key of what it reads>/ (see
    # orchestration.layout), so a changed setting reruns only the tasks that read it.
    work_root: str = "s3://finegrain-artifacts/runs"
    # After a run that succeeded, delete the task outputs that none of the latest N runs (nor a run still in
    # flight) uses, as `finegrain gc --keep N` does; 0 keeps everything.
    retention_runs: int = Field(0, ge=0)
    gpu_node_selector: dict[str, str] = Field(default_factory=lambda: {"finegrain.io/pool": "gpu"})
    gpu_toleration_key: str = "nvidia.com/gpu"
    train_cpu: str = "8"
    train_memory: str = "48Gi"
    train_shm_size: str = "16Gi"
    train_retries: int = Field(3, ge=0)
    train_timeout_s: int = Field(6 * 3600, gt=0)
    step_cpu: str = "2"
    step_memory: str = "8Gi"
    cache: bool = True
    schedule_cron: str = "0 0 3 * * 1"

    def resolved_cpu_image(self) -> str:
        """The image of every task but train: cpu_image, else base_image with "-cuda" swapped for "-cpu"."""
        if self.cpu_image:
            return self.cpu_image
        repo, sep, tag = self.base_image.rpartition(":")
        if sep and "/" not in tag and tag.endswith("-cuda"):
            return f"{repo}:{tag[: -len('-cuda')]}-cpu"
        return self.base_image


class Config(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    regroup: RegroupConfig = Field(default_factory=RegroupConfig)
    calibrate: CalibrateConfig = Field(default_factory=CalibrateConfig)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    submit: SubmitConfig = Field(default_factory=SubmitConfig)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)

    @model_validator(mode="after")
    def _aliases_are_pairs(self) -> "Config":
        for alias, canonical in self.data.aliases.items():
            if alias == canonical:
                raise ValueError(f"data.aliases: {alias!r} is mapped to itself")
            if canonical in self.data.aliases:
                raise ValueError(f"data.aliases: canonical class {canonical!r} is itself an alias (chains not allowed)")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), allow_unicode=True, sort_keys=False)
