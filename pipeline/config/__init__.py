"""One typed configuration for the whole pipeline.

`PipelineConfig` is composed of one dataclass per stage (`sections`; ``train`` in `training`),
filled from the defaults, a YAML file and overrides (`loading`), every value typed and checked
(`checks`); the per-run parameters of the CLI and the Airflow trigger form are generated from it
(`params`).
Importing this package is cheap (no numerical library).
"""

from pipeline.config.loading import apply_overrides, load_config, parse_set_flags
from pipeline.config.sections import (
    BaselineConfig,
    DataConfig,
    EvaluateConfig,
    PipelineConfig,
    PostprocessConfig,
    PreprocessConfig,
    RegistryConfig,
    TrackingConfig,
    ValidateConfig,
    WatershedConfig,
)
from pipeline.config.training import TrainConfig
from pipeline.errors import ConfigError

__all__ = [
    "BaselineConfig",
    "ConfigError",
    "DataConfig",
    "EvaluateConfig",
    "PipelineConfig",
    "PostprocessConfig",
    "PreprocessConfig",
    "RegistryConfig",
    "TrackingConfig",
    "TrainConfig",
    "ValidateConfig",
    "WatershedConfig",
    "apply_overrides",
    "load_config",
    "parse_set_flags",
]
