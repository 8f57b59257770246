"""One validated config for a whole finegrain run.

Load with `load_config(path, overrides=["train.epochs=2", ...])`: the file is YAML, each override is
`dotted.key=value` with the value parsed as YAML. Unknown keys and wrong types are errors that name the key,
so a typo in a 5-hour run's config fails in the first second rather than being silently ignored. Files and
override values are parsed within size and alias-expansion limits (`finegrain.config.yaml_limits`).

This package is the facade callers import from; the work is done in its modules:
  base         what every section shares: unknown keys are errors (_Section), ConfigError
  schema       the pydantic models: Config and one model per section (DataConfig, EnsembleConfig, ...)
  train        the train section: TrainConfig, BackboneSpec, HeadConfig, LossConfig, MixConfig, SwaConfig
  files        load_config, config_from_dict, config_to_text, flatten
  overrides    `--set key.path=value` parsing (parse_override)
  copy_kinds   the kinds of copy preprocess.near_duplicate_action names, and each one's default
  endpoints    endpoint_problem: where a bearer token may be sent
  yaml_limits  YAML parsing within size and alias-expansion limits
"""

from __future__ import annotations

from finegrain.config.base import ConfigError
from finegrain.config.endpoints import endpoint_problem
from finegrain.config.files import config_from_dict, config_to_text, flatten, load_config
from finegrain.config.overrides import parse_override
from finegrain.config.schema import (
    CalibrateConfig,
    Config,
    DataConfig,
    EnsembleConfig,
    PipelineConfig,
    PredictConfig,
    PreprocessConfig,
    PromotionConfig,
    RegroupConfig,
    StorageConfig,
    SubmitConfig,
    TrackingConfig,
)
from finegrain.config.train import BackboneSpec, HeadConfig, LossConfig, MixConfig, SwaConfig, TrainConfig

__all__ = [
    "BackboneSpec", "CalibrateConfig", "Config", "ConfigError", "DataConfig", "EnsembleConfig", "HeadConfig",
    "LossConfig", "MixConfig", "PipelineConfig", "PredictConfig", "PreprocessConfig", "PromotionConfig",
    "RegroupConfig", "StorageConfig", "SubmitConfig", "SwaConfig", "TrackingConfig", "TrainConfig",
    "config_from_dict", "config_to_text",
    "endpoint_problem", "flatten", "load_config", "parse_override",
]  # fmt: skip
