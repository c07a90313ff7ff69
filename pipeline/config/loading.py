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
import os
import typing
from pathlib import Path
from typing import Any

import yaml

from pipeline.config.checks import check_config, check_field, coerce, get_value, leaf_fields
from pipeline.config.sections import PipelineConfig
from pipeline.errors import ConfigError


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
    setattr(obj, name, coerce(key, value, typing.get_type_hints(type(obj))[name]))


def from_dict(cls: type, tree: dict[str, Any], what: str = "") -> Any:
    """An instance of the config dataclass `cls` from a (nested) dict, coerced and checked
    like a config file; `what` prefixes the keys in messages (e.g. ``postprocess``)."""
    obj = cls()
    for key, value in _flatten(tree, obj).items():
        _set(obj, key, value)
    for key, f, _ in leaf_fields(obj):
        check_field(f"{what}.{key}" if what else key, f, get_value(obj, key))
    return obj


def apply_overrides(cfg: PipelineConfig, overrides: dict[str, Any]) -> PipelineConfig:
    """A checked copy of `cfg` with ``{"section.key": value}`` (or nested dict) overrides."""
    cfg = copy.deepcopy(cfg)
    for key, value in _flatten(overrides, cfg).items():
        _set(cfg, key, value)
    check_config(cfg)
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
