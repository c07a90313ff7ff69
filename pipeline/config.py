"""One typed configuration for the whole pipeline.

`PipelineConfig` is composed of one dataclass per stage. Defaults work offline on the built-in
demo dataset. Values come, in increasing priority, from the defaults, a YAML file, and overrides
(CLI ``--set section.key=value`` flags or Airflow DAG params)::

    cfg = load_config("configs/bbbc020.yaml", {"train.epochs": 3})

Every value is type-checked and range-checked on load; a bad value raises `ConfigError` naming
the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """An invalid configuration value or file; the message says which key and how to fix it."""


@dataclass
class DataConfig:
    """Where the raw data comes from and what to segment.

    `source` is ``demo`` (generate the synthetic BBBC020-layout set), a local folder, an archive
    directory or a URL base, depending on `layout`.
    """

    layout: str = "bbbc020"
    source: str = "demo"
    target: str = "cells"  # label set to learn and score: cells | nuclei
    channels: list[str] = field(default_factory=lambda: ["c1", "c5"])
    demo_fields: int = 12
    demo_height: int = 256
    demo_width: int = 320
    demo_seed: int = 0


@dataclass
class ValidateConfig:
    min_labelled_fields: int = 3
    max_blank_std: float = 1.0  # an image channel with a std below this (in raw units) is blank
    max_saturated_fraction: float = 0.05
    min_mask_coverage: float = 0.001
    max_mask_coverage: float = 0.95
    fail_on_warning: bool = False


@dataclass
class PreprocessConfig:
    low_percentile: float = 1.0
    high_percentile: float = 99.8
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    split_seed: int = 0


@dataclass
class BaselineConfig:
    methods: list[str] = field(default_factory=lambda: ["otsu"])
    channel: str = "c1"  # the notebook scored thresholds on c1
    min_object_size: int = 30


@dataclass
class TrainConfig:
    encoder: str = "resnet18"
    encoder_weights: str | None = None  # "imagenet" when online; None trains from scratch
    epochs: int = 6
    steps_per_epoch: int = 20
    batch_size: int = 8
    crop_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0
    threshold: float = 0.5


@dataclass
class EvaluateConfig:
    border_margin: int = 0  # pixels cropped from each edge before scoring (BBBC020: ~150 at full size)
    report_overlays: int = 4


@dataclass
class RegistryConfig:
    uri: str = "registry"  # local folder or s3://bucket/prefix
    model_name: str = "cellseg-unet"
    s3_endpoint_url: str | None = None  # e.g. http://127.0.0.1:8333 for a local S3 server


@dataclass
class TrackingConfig:
    backend: str = "wandb"  # wandb | none
    mode: str = "offline"  # offline | online (online needs WANDB_API_KEY)
    project: str = "cellseg"


@dataclass
class PathsConfig:
    data_dir: str = "data"  # raw downloads and dataset versions
    runs_dir: str = "runs"  # one folder per pipeline run


@dataclass
class PipelineConfig:
    data: DataConfig = field(default_factory=DataConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Allowed values for string settings that select from a fixed set. Registries of methods
# (layouts, baselines, encoders) are checked by the stage that owns them.
_CHOICES: dict[str, tuple[str, ...]] = {
    "data.target": ("cells", "nuclei"),
    "train.device": ("auto", "cpu", "cuda"),
    "tracking.backend": ("wandb", "none"),
    "tracking.mode": ("offline", "online", "disabled"),
}
_POSITIVE = {
    "data.demo_fields", "data.demo_height", "data.demo_width", "train.epochs",
    "train.steps_per_epoch", "train.batch_size", "train.crop_size", "train.lr",
}
_FRACTIONS = {"preprocess.val_fraction", "preprocess.test_fraction", "train.threshold"}


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Convert `value` to the field's annotated type or raise ConfigError."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(key, value, args[0])
    if origin is list:
        (item,) = typing.get_args(annotation)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}={value!r}: expected a list, e.g. {key}=a,b")
        return [_coerce(key, v, item) for v in value]
    if isinstance(value, str) and annotation is not str:
        value = yaml.safe_load(value) if value.strip() else value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}={value!r}: expected true or false")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise ConfigError(f"{key}={value!r}: expected an integer")
        return int(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}={value!r}: expected a number")
        return float(value)
    if annotation is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"{key}={value!r}: expected a string")
        return str(value)
    raise ConfigError(f"{key}: unsupported type {annotation}")  # pragma: no cover


def _check_ranges(cfg: PipelineConfig) -> None:
    for key, allowed in _CHOICES.items():
        value = get_value(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not valid; choose one of {', '.join(allowed)}")
    for key in _POSITIVE:
        if get_value(cfg, key) <= 0:
            raise ConfigError(f"{key}={get_value(cfg, key)!r} must be > 0")
    for key in _FRACTIONS:
        if not 0.0 <= get_value(cfg, key) < 1.0:
            raise ConfigError(f"{key}={get_value(cfg, key)!r} must be in [0, 1)")
    p = cfg.preprocess
    if p.val_fraction + p.test_fraction >= 1.0:
        raise ConfigError(
            f"preprocess.val_fraction + test_fraction = {p.val_fraction + p.test_fraction} "
            "leaves no training fields; keep the sum below 1"
        )
    if not 0.0 <= p.low_percentile < p.high_percentile <= 100.0:
        raise ConfigError(
            f"preprocess percentiles ({p.low_percentile}, {p.high_percentile}) must satisfy "
            "0 <= low < high <= 100"
        )
    if cfg.train.crop_size % 32:
        raise ConfigError(f"train.crop_size={cfg.train.crop_size} must be a multiple of 32 (U-Net)")


def get_value(cfg: PipelineConfig, key: str) -> Any:
    section, _, name = key.partition(".")
    return getattr(getattr(cfg, section), name)


def _section_types(section: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(section))
    return {f.name: hints[f.name] for f in fields(section)}


def apply_overrides(cfg: PipelineConfig, overrides: dict[str, Any]) -> PipelineConfig:
    """Return a copy of `cfg` with ``{"section.key": value}`` (or nested dict) overrides applied."""
    cfg = dataclasses.replace(cfg, **{f.name: dataclasses.replace(getattr(cfg, f.name))
                                      for f in fields(cfg)})
    sections = {f.name for f in fields(cfg)}
    for key, value in _flatten(overrides).items():
        section_name, _, name = key.partition(".")
        if section_name not in sections:
            raise ConfigError(
                f"unknown config section {section_name!r} in {key!r}; "
                f"valid sections: {', '.join(sorted(sections))}"
            )
        section = getattr(cfg, section_name)
        types_ = _section_types(section)
        if name not in types_:
            raise ConfigError(
                f"unknown config key {key!r}; valid keys in {section_name}: "
                f"{', '.join(sorted(types_))}"
            )
        setattr(section, name, _coerce(key, value, types_[name]))
    _check_ranges(cfg)
    return cfg


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and "." not in full:
            flat.update(_flatten(value, f"{full}."))
        else:
            flat[full] = value
    return flat


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> PipelineConfig:
    """Defaults, then the YAML file at `path` (if given), then `overrides`."""
    cfg = PipelineConfig()
    if path:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass an existing YAML file")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
        cfg = apply_overrides(cfg, tree)
    return resolve_paths(apply_overrides(cfg, overrides or {}))


def resolve_paths(cfg: PipelineConfig) -> PipelineConfig:
    """Make relative local paths absolute against ``$CELLSEG_HOME`` (default: the working dir).

    Airflow workers may start in another directory; anchoring paths keeps every task of a run
    reading and writing the same folders.
    """
    home = Path(os.environ.get("CELLSEG_HOME", ".")).resolve()
    for section, key in (("paths", "data_dir"), ("paths", "runs_dir"), ("registry", "uri")):
        value = getattr(getattr(cfg, section), key)
        if "://" not in value and not Path(value).is_absolute():
            setattr(getattr(cfg, section), key, str(home / value))
    src = cfg.data.source
    if src != "demo" and "://" not in src and not Path(src).expanduser().is_absolute():
        cfg.data.source = str(home / src)
    return cfg


def parse_set_flags(items: list[str]) -> dict[str, str]:
    """Parse CLI ``section.key=value`` strings into an overrides dict."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set {item!r} must look like section.key=value, e.g. train.epochs=3")
        out[key.strip()] = value
    return out
