"""Flat run parameters: the few settings people change per run, as CLI options and as fields of
the Airflow trigger form. Names, config keys and help text are listed once here; types, bounds
and choices come from the config schema (`pipeline.config.sections`), so a drop-down always
offers exactly the values the config accepts.

A parameter left empty (None, ``""`` or ``[]``) keeps the value of the config file.
"""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass
from typing import Any

from pipeline.config.checks import choices_of, leaf_fields
from pipeline.config.loading import load_config
from pipeline.config.sections import PipelineConfig

FROM_CONFIG = "(from the config file)"


@dataclass(frozen=True)
class RunParam:
    name: str  # CLI option --name (underscores as dashes), DAG param name
    key: str  # config key it sets
    help: str
    examples: tuple[str, ...] = ()  # suggestions for free-text values


SUGGESTED_ENCODERS = ("resnet18", "resnet34", "resnet50", "efficientnet-b0", "mobilenet_v2")
# (name, config key, help, suggestions for free text), one parameter per line.
PARAMS: tuple[RunParam, ...] = tuple(
    RunParam(*row)
    for row in (
        ("layout", "data.layout", "dataset layout"),
        ("source", "data.source", "demo, broad, a folder, a .zip, http(s):// or s3:// URL"),
        ("target", "data.target", "label set to learn and score"),
        ("epochs", "train.epochs", "U-Net training epochs"),
        ("steps_per_epoch", "train.steps_per_epoch", "training steps per epoch"),
        ("encoder", "train.encoder", "segmentation-models-pytorch encoder", SUGGESTED_ENCODERS),
        ("encoder_weights", "train.encoder_weights", "imagenet (online) or none", ("imagenet",)),
        ("device", "train.device", "where to train (auto: a GPU when present)"),
        ("baselines", "baseline.methods", "classical methods to compare with"),
        ("border_policy", "evaluate.border_policy", "scoring at the image edge (BBBC020: crop)"),
        ("border_margin", "evaluate.border_margin", "pixels cropped per edge (crop only)"),
        ("registry_uri", "registry.uri", "model registry: a folder or s3://bucket/prefix"),
        ("tracking", "tracking.backend", "experiment tracking (W&B, offline without a key)"),
    )
)
_FIELDS = {key: (f, hint) for key, f, hint in leaf_fields(PipelineConfig())}


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def config_from_params(params: dict[str, Any] | None) -> PipelineConfig:
    """The run's config from params: ``config_file`` (YAML; default ``$CELLSEG_CONFIG``), the
    flat `PARAMS`, then an ``overrides`` dict of any ``{"section.key": value}``, in increasing
    priority. Empty params keep the config file's values."""
    params = dict(params or {})
    path = params.pop("config_file", None) or os.environ.get("CELLSEG_CONFIG") or None
    overrides = params.pop("overrides", None) or {}
    flat = {p.key: params[p.name] for p in PARAMS if not is_empty(params.get(p.name))}
    return load_config(path, {**flat, **overrides})


def json_schema(p: RunParam) -> dict[str, Any]:
    """JSON schema of a run parameter for the Airflow trigger form (drop-downs for choices)."""
    f, hint = _FIELDS[p.key]
    base = typing.get_args(hint)[0] if typing.get_origin(hint) is not None else hint
    allowed = choices_of(f)
    schema: dict[str, Any] = {"description": f"{p.help} [{p.key}]"}
    if typing.get_origin(hint) is list:
        schema |= {"type": "array", "default": []}
        if allowed:
            schema |= {"examples": list(allowed)}  # the form shows a multi-select
        schema["description"] += "; empty: from the config file"
    elif allowed:
        schema |= {
            "type": "string",
            "default": "",
            "enum": ["", *allowed],
            "values_display": {"": FROM_CONFIG, **{a: a for a in allowed}},
        }
    else:
        kind = {int: "integer", float: "number"}.get(base, "string")
        schema |= {"type": ["null", kind], "default": None}
        if f.metadata.get("min") is not None and kind != "string":
            lo = f.metadata["min"]
            schema["minimum" if not f.metadata.get("exclusive_min") else "exclusiveMinimum"] = lo
        if p.examples:
            schema["examples"] = list(p.examples)
        schema["description"] += "; empty: from the config file"
    return schema
