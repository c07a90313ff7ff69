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

    `source` is ``demo`` (generate the synthetic BBBC020-layout set), ``broad`` (download the
    layout's official archives), an ``http(s)://`` base URL holding the archives, ``s3://bucket/
    prefix`` (archives or an extracted tree), a local folder of ``.zip`` archives, one ``.zip``,
    or an extracted folder. Remote archives are checked against `sha256` (``name=<hex>``
    entries), then the layout's known sums, then a ``SHA256SUMS`` file beside them.
    """

    layout: str = "bbbc020"
    source: str = "demo"
    target: str = "cells"  # label set to learn and score: cells | nuclei
    channels: list[str] = field(default_factory=lambda: ["c1", "c5"])
    demo_fields: int = 12
    demo_height: int = 256
    demo_width: int = 320
    demo_seed: int = 0
    archives: list[str] = field(default_factory=list)  # archive names; [] = the layout's default
    sha256: list[str] = field(default_factory=list)  # "name=<64 hex>" expected sums (override)
    cache_dir: str | None = None  # downloads; None: <data_dir>/raw/downloads; relative: in data_dir
    s3_endpoint_url: str | None = None  # e.g. http://127.0.0.1:8333 for a local S3 server
    download_retries: int = 4  # attempts after the first, waiting backoff * 2**attempt
    download_backoff_s: float = 1.0
    download_timeout_s: float = 60.0


@dataclass
class ValidateConfig:
    """Thresholds of the data checks that gate a run (suite: pipeline/expectations.py).

    A threshold left at ``None`` takes the default of the dataset's layout
    (``expectations.LAYOUT_DEFAULTS``: bbbc020, ctc, folder); a value set here applies to every
    layout. `severity` moves a check between levels, e.g. ``["mask_coverage_in_range=critical"]``;
    `fail_on_warning` treats every failed warning as critical.
    """

    min_labelled_fields: int = 3  # fields with the target labels needed to train
    max_blank_std: float = 1.0  # an image channel with a std below this (in raw units) is blank
    max_saturated_fraction: float = 0.05  # of pixels at the dtype maximum, per channel
    allowed_dtypes: list[str] = field(default_factory=lambda: ["uint8", "uint16"])
    min_mask_coverage: float | None = None  # foreground fraction of a target mask
    max_mask_coverage: float | None = None
    min_objects: int | None = None  # objects per labelled field
    max_objects: int | None = None
    min_object_area: int | None = None  # pixels; smaller objects are fragments
    max_object_fraction: float | None = None  # of the field's area; larger objects are implausible
    object_size_mostly: float | None = None  # share of objects that must be plausible in size
    severity: list[str] = field(default_factory=list)  # "check_name=critical|warning"
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
    """Classical methods run on the test split (see pipeline/baseline.py and watershed.py).

    Lengths and areas are in pixels of the images as ingested; the defaults suit the demo
    fields (256 x 320, cells ~40 px across): scale them up for full-size BBBC020 (1040 x 1388).
    """

    methods: list[str] = field(
        default_factory=lambda: [
            "threshold55",
            "otsu",
            "gaussian_otsu",
            "adaptive_gaussian",
            "watershed",
        ]
    )
    channel: str | None = None  # None: the layout's channel for data.target (BBBC020 cells: c1)
    min_object_size: int = 30  # watershed: smaller foreground objects are dropped
    watershed_sigma: float = 1.0  # Gaussian denoising before thresholding
    watershed_threshold: str = "otsu"  # otsu | li | triangle | yen | mean (scikit-image)
    watershed_max_hole_size: int = 100  # holes up to this area are filled
    watershed_marker_channel: str | None = "c5"  # nuclei as cell markers; None: distance peaks
    watershed_min_marker_size: int = 10  # smaller nucleus blobs are not markers
    watershed_min_distance: int = 5  # between distance-transform peaks (nuclei markers)
    watershed_peak_sigma: float = 1.0  # smoothing of the distance map before peak finding


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
    # How `cellseg predict` turns the U-Net's foreground into instances: "watershed" splits
    # touching objects with the baseline's markers (nuclei for cells, distance peaks for
    # nuclei), "components" does not. Evaluation always reports both ("unet" = the model alone,
    # "unet_watershed" = with the split), so the model is never credited with post-processing.
    instances: str = "watershed"


@dataclass
class EvaluateConfig:
    """Scoring on the test split (metric definitions in pipeline/metrics.py).

    BBBC020 annotators skipped objects touching the border, so score with ``crop`` (drop
    `border_margin` px from each edge, about one cell diameter: ~150 px at full size) or
    ``ignore_border_predictions`` (drop predicted objects touching the image edge). ``none``
    scores whole images (CTC: every object is labelled). `border_margin` is used by crop only.
    """

    border_policy: str = "ignore_border_predictions"  # none | crop | ignore_border_predictions
    border_margin: int = 0  # crop only
    report_overlays: int = 4  # test fields shown side by side (all methods) in report.html


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
WATERSHED_THRESHOLDS = ("otsu", "li", "triangle", "yen", "mean")  # scikit-image threshold_*
BORDER_POLICIES = ("none", "crop", "ignore_border_predictions")
_CHOICES: dict[str, tuple[str, ...]] = {
    "data.target": ("cells", "nuclei"),
    "baseline.watershed_threshold": WATERSHED_THRESHOLDS,
    "evaluate.border_policy": BORDER_POLICIES,
    "train.device": ("auto", "cpu", "cuda"),
    "train.instances": ("watershed", "components"),
    "tracking.backend": ("wandb", "none"),
    "tracking.mode": ("offline", "online", "disabled"),
}
_POSITIVE = {
    "data.demo_fields",
    "data.demo_height",
    "data.demo_width",
    "train.epochs",
    "train.steps_per_epoch",
    "train.batch_size",
    "train.crop_size",
    "train.lr",
    "baseline.min_object_size",
    "baseline.watershed_min_distance",
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
        if isinstance(value, str) and value.strip().startswith("["):
            value = yaml.safe_load(value)  # a YAML flow list: [a, b]
        elif isinstance(value, str):
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
    e = cfg.evaluate
    if (e.border_policy == "crop") != (e.border_margin > 0) or e.border_margin < 0:
        raise ConfigError(
            f"evaluate.border_margin={e.border_margin} with border_policy={e.border_policy!r}: "
            "crop needs a margin > 0 (pixels per edge); the other policies need 0"
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
    cfg = dataclasses.replace(
        cfg, **{f.name: dataclasses.replace(getattr(cfg, f.name)) for f in fields(cfg)}
    )
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
    if (
        src not in ("demo", "broad")
        and "://" not in src
        and not Path(src).expanduser().is_absolute()
    ):
        cfg.data.source = str(home / src)
    return cfg


def parse_set_flags(items: list[str]) -> dict[str, str]:
    """Parse CLI ``section.key=value`` strings into an overrides dict."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(
                f"--set {item!r} must look like section.key=value, e.g. train.epochs=3"
            )
        out[key.strip()] = value
    return out
