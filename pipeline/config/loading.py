"""Filling the typed configuration: defaults, then a YAML file, then overrides.

Overrides are ``{"section.key": value}`` (any depth: ``baseline.watershed.min_distance``) or
nested dicts, from CLI ``--set`` flags, CLI options or Airflow DAG params::

    cfg = load_config("configs/bbbc020.yaml", {"train.epochs": 3})

Every value is type-checked and range-checked on load (rules on the fields of
`pipeline.config.sections`); a bad value raises `ConfigError` naming the key, the value and what
is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import math
import os
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
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


def _check_field(key: str, f: dataclasses.Field, value: Any) -> None:
    """The field's own rule: choices (each item of a list), bounds."""
    allowed, registry = choices_of(f), f.metadata.get("choices")
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


def _check(cfg: PipelineConfig) -> None:
    """Every field's rule, then the rules that tie several fields together."""
    for key, f, _ in leaf_fields(cfg):
        _check_field(key, f, get_value(cfg, key))
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


def _flatten(tree: dict[str, Any], section: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> dotted keys, descending only into dataclass-typed fields."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        full = f"{prefix}{key}"
        try:
            child = get_value(section, key) if section is not None else None
        except AttributeError:
            child = None
        if isinstance(value, dict) and dataclasses.is_dataclass(child):
            flat.update(_flatten(value, child, f"{full}."))
        else:
            flat[full] = value
    return flat


def _set(root: Any, key: str, value: Any) -> None:
    """Set the leaf `key` (dotted path) below the dataclass `root`, coerced to its type."""
    *path, name = key.split(".")
    obj: Any = root
    for depth, part in enumerate([*path, name]):
        children = [f.name for f in dataclasses.fields(obj)]
        sections = [n for n in children if dataclasses.is_dataclass(getattr(obj, n))]
        leaves = [n for n in children if n not in sections]
        where = ".".join(path[:depth])
        if depth == len(path):  # the leaf itself
            if name in leaves:
                break
            if name in sections:
                raise ConfigError(
                    f"{key}={value!r}: {key} is a section; set its keys, e.g. "
                    f"{key}.{dataclasses.fields(getattr(obj, name))[0].name}=..."
                )
            if not leaves:  # the top level holds sections only
                raise ConfigError(
                    f"unknown config section {name!r} in {key!r}; valid sections: "
                    f"{', '.join(sorted(sections))} (keys look like section.key)"
                )
            raise ConfigError(
                f"unknown config key {key!r}; valid keys in {where}: {', '.join(sorted(leaves))}"
            )
        if part not in sections:
            raise ConfigError(
                f"unknown config section {part!r} in {key!r}; valid sections"
                f"{' in ' + where if where else ''}: {', '.join(sorted(sections))}"
            )
        obj = getattr(obj, part)
    setattr(obj, name, _coerce(key, value, typing.get_type_hints(type(obj))[name]))


def from_dict(cls: type, tree: dict[str, Any], what: str = "") -> Any:
    """An instance of the config dataclass `cls` from a (nested) dict, coerced and checked
    like a config file; `what` prefixes the keys in messages (e.g. ``postprocess``)."""
    obj = cls()
    for key, value in _flatten(tree, obj).items():
        _set(obj, key, value)
    for key, f, _ in leaf_fields(obj):
        _check_field(f"{what}.{key}" if what else key, f, get_value(obj, key))
    return obj


def apply_overrides(cfg: PipelineConfig, overrides: dict[str, Any]) -> PipelineConfig:
    """A checked copy of `cfg` with ``{"section.key": value}`` (or nested dict) overrides."""
    cfg = copy.deepcopy(cfg)
    for key, value in _flatten(overrides, cfg).items():
        _set(cfg, key, value)
    _check(cfg)
    return cfg


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> PipelineConfig:
    """Defaults, then the YAML file at `path` (if given), then `overrides`; ``data.target``
    left at its default follows ``data.layout`` (`target_for_layout`)."""
    cfg, tree = PipelineConfig(), {}
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
        try:
            cfg = apply_overrides(cfg, tree)
        except ConfigError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
    cfg = apply_overrides(cfg, overrides or {})
    given = {**_flatten(tree, cfg), **_flatten(overrides or {}, cfg)}
    return resolve_paths(target_for_layout(cfg, explicit="data.target" in given))


def target_for_layout(cfg: PipelineConfig, explicit: bool = False) -> PipelineConfig:
    """`cfg` with ``data.target`` the layout's first label set when it was not set (`explicit`)
    and the layout does not hold the default (``cells``, BBBC020's: CTC sets and plain folders
    hold nuclei). An explicit target the layout lacks stays, to be refused where the data is
    read."""
    from pipeline.ingest.layouts import get_layout

    targets = get_layout(cfg.data.layout).target_channel
    if explicit or cfg.data.target in targets:
        return cfg
    cfg = copy.deepcopy(cfg)
    cfg.data.target = next(iter(targets))
    return cfg


def resolve_paths(cfg: PipelineConfig) -> PipelineConfig:
    """Make relative local paths absolute against ``$CELLSEG_HOME`` (default: the working dir).

    Airflow workers may start in another directory; anchoring paths keeps every task of a run
    reading and writing the same folders.
    """
    home = Path(os.environ.get("CELLSEG_HOME", ".")).resolve()
    keys = (("paths", "data_dir"), ("paths", "runs_dir"), ("registry", "uri"))
    for section, key in (*keys, ("predict", "images"), ("predict", "out")):
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
