"""Types and rules of config values: coercing text to a field's type, checking a field's
choices and bounds (`pipeline.config.sections` declares them as field metadata), and the rules
that tie several fields together. A bad value raises `ConfigError` naming the key, the value and
what is allowed.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import re
import types
import typing
from collections.abc import Iterator
from typing import Any

import yaml

from pipeline.config.sections import PipelineConfig
from pipeline.errors import ConfigError

# Method registries named by a field's ``choices``: registry -> (module, dict, getter raising
# ConfigError with the valid names). Imported only when a value is checked or the choices are
# listed (the registry modules import nothing heavy).
REGISTRIES = {
    "layouts": ("pipeline.ingest.layouts", "LAYOUTS", "get_layout"),
    "baselines": ("pipeline.segment.classical", "METHODS", "get_method"),
}
# YAML 1.1 reads "1e-3" (no dot) as a string; users write numbers that way.
_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def choices_of(f: dataclasses.Field) -> tuple | None:
    """The allowed values of a config field (resolving a registry name), or None."""
    allowed = f.metadata.get("choices")
    if isinstance(allowed, str):
        module, registry, _ = REGISTRIES[allowed]
        return tuple(getattr(importlib.import_module(module), registry))
    return allowed


def leaf_fields(obj: Any, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """(dotted key, field, type hint) for every non-dataclass field below `obj`, in order."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from leaf_fields(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, hints[f.name]


def get_value(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def coerce(key: str, value: Any, annotation: Any) -> Any:
    """Convert `value` to the field's annotated type or raise ConfigError."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return coerce(key, value, args[0])
    if origin is list:
        (item,) = typing.get_args(annotation)
        if isinstance(value, str) and value.strip().startswith("["):
            value = yaml.safe_load(value)  # a YAML flow list: [a, b]
        elif isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}={value!r}: expected a list, e.g. {key}=a,b")
        return [coerce(key, v, item) for v in value]
    if origin is dict:
        _, item = typing.get_args(annotation)
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip() else {}  # a YAML flow map: {a: 2}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r}: expected a mapping, e.g. {key}={{name: 2}}")
        return {str(k): coerce(f"{key}.{k}", v, item) for k, v in value.items()}
    if isinstance(value, str) and annotation is not str:
        text = value.strip()
        value = float(text) if _FLOAT.match(text) and annotation is float else text
        value = yaml.safe_load(value) if isinstance(value, str) and value else value
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


def check_field(key: str, f: dataclasses.Field, value: Any) -> None:
    """The field's own rule: choices (each item of a list), bounds."""
    allowed, registry = choices_of(f), f.metadata.get("choices")
    if isinstance(value, dict):
        for k, v in value.items():
            if not math.isfinite(v) or v < 0:
                raise ConfigError(f"{key}.{k}={v!r} must be a finite number >= 0")
        return
    for v in value if isinstance(value, list) else [value]:
        if isinstance(registry, str) and v not in allowed:
            module, _, getter = REGISTRIES[registry]
            getattr(importlib.import_module(module), getter)(v)  # raises, listing valid names
        if allowed is not None and v not in allowed:
            raise ConfigError(f"{key}={v!r} is not valid; choose one of {', '.join(allowed)}")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    if not math.isfinite(value):
        raise ConfigError(f"{key}={value!r} must be a finite number")
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    exclusive = f.metadata.get("exclusive_min")
    if lo is not None and (value <= lo if exclusive else value < lo):
        raise ConfigError(f"{key}={value!r} must be {'>' if exclusive else '>='} {lo}")
    if hi is not None and (value >= hi if f.metadata.get("exclusive_max") else value > hi):
        if hi == 1.0 and lo == 0.0:
            raise ConfigError(f"{key}={value!r} must be in [0, 1)")
        raise ConfigError(f"{key}={value!r} must be <= {hi}")


def check_config(cfg: PipelineConfig) -> None:
    """Every field's rule, then the rules that tie several fields together."""
    for key, f, _ in leaf_fields(cfg):
        check_field(key, f, get_value(cfg, key))
    d = cfg.data
    if d.val_fraction + d.test_fraction >= 1.0:
        raise ConfigError(
            f"data.val_fraction + test_fraction = {d.val_fraction + d.test_fraction} "
            "leaves no training fields; keep the sum below 1"
        )
    p = cfg.preprocess
    if not p.low_percentile < p.high_percentile:
        raise ConfigError(
            f"preprocess percentiles ({p.low_percentile}, {p.high_percentile}) must satisfy "
            "0 <= low < high <= 100"
        )
    e = cfg.evaluate
    if (e.border_policy == "crop") != (e.border_margin > 0):
        raise ConfigError(
            f"evaluate.border_margin={e.border_margin} with border_policy={e.border_policy!r}: "
            "crop needs a margin > 0 (pixels per edge); the other policies need 0"
        )
    for key in ("train.crop_size", "postprocess.tile_size"):
        if get_value(cfg, key) % 32:
            raise ConfigError(f"{key}={get_value(cfg, key)} must be a multiple of 32 (U-Net)")
    a = cfg.train.augment
    if a.scale_min > a.scale_max:
        raise ConfigError(
            f"train.augment.scale_min={a.scale_min} > scale_max={a.scale_max}; keep min <= max"
        )
    if len(cfg.train.decoder_channels) != 5 or min(cfg.train.decoder_channels) < 1:
        raise ConfigError(
            f"train.decoder_channels={cfg.train.decoder_channels}: five positive channel "
            "counts, one per U-Net decoder block (e.g. 128,64,32,16,16)"
        )
