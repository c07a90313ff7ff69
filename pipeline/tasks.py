"""Stage entry points with JSON-able inputs and outputs, shared by the CLI and the Airflow DAG.

Each function takes the run's parameters (config overrides), the run id and the small dicts the
upstream stages returned (paths, ids, metrics; never arrays), calls one stage and returns a small
dict. All artifacts of one run go under ``<paths.runs_dir>/<run_id>/``; re-running a task with
the same inputs rewrites the same files, so retries are safe.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError, PipelineConfig, load_config
from pipeline.io import DataError, safe_name

log = logging.getLogger(__name__)

# Flat DAG params / CLI flags -> config keys.
PARAM_KEYS = {
    "layout": "data.layout",
    "source": "data.source",
    "target": "data.target",
    "epochs": "train.epochs",
    "steps_per_epoch": "train.steps_per_epoch",
    "encoder": "train.encoder",
    "encoder_weights": "train.encoder_weights",
    "device": "train.device",
    "baselines": "baseline.methods",
    "border_policy": "evaluate.border_policy",
    "border_margin": "evaluate.border_margin",
    "registry_uri": "registry.uri",
    "tracking": "tracking.backend",
}


def make_config(params: dict[str, Any] | None) -> PipelineConfig:
    """Config from params: ``config_file`` (YAML; default ``$CELLSEG_CONFIG``), flat keys of
    PARAM_KEYS, and an ``overrides`` dict, in increasing priority."""
    params = dict(params or {})
    path = params.pop("config_file", None) or os.environ.get("CELLSEG_CONFIG") or None
    overrides = params.pop("overrides", None) or {}
    flat = {PARAM_KEYS[k]: v for k, v in params.items() if k in PARAM_KEYS and v not in (None, "")}
    return load_config(path, {**flat, **overrides})


def check_names(cfg: PipelineConfig, encoder: bool = True) -> None:
    """Fail before any work on names the stages would only reject later (layout, baseline
    methods and, if `encoder`, the smp encoder: that check imports torch), listing the valid
    choices."""
    from pipeline.baseline import get_method
    from pipeline.layouts import get_layout

    get_layout(cfg.data.layout)
    for name in cfg.baseline.methods:
        get_method(name)
    if encoder:
        from pipeline.predict import build_model

        build_model(cfg.train.encoder, in_channels=1, classes=1)  # no weights: no download


def run_dir_for(cfg: PipelineConfig, run_id: str) -> str:
    path = Path(cfg.paths.runs_dir) / safe_name(run_id)
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def fail_fast(error_type: type[Exception], func: Callable[..., dict], *args: Any) -> dict:
    """Call `func`; re-raise bad-data and bad-config errors as `error_type` (e.g. an
    orchestrator's no-retry exception), keeping the message that names the file and the fix."""
    try:
        return func(*args)
    except (DataError, ConfigError) as exc:
        raise error_type(str(exc)) from exc


def ingest_task(params: dict, run_id: str) -> dict:
    from pipeline.ingest import ingest

    cfg = make_config(params)
    check_names(cfg)  # the first task rejects a bad method or encoder name before any work
    return {**ingest(cfg).to_dict(), "run_dir": run_dir_for(cfg, run_id)}


def validate_task(params: dict, run_id: str, dataset: dict) -> dict:
    from pipeline.validate import validate

    cfg = make_config(params)
    return validate(dataset["uri"], cfg, run_dir_for(cfg, run_id)).summary()


def preprocess_task(params: dict, run_id: str, dataset: dict, validation: dict) -> dict:
    from pipeline.preprocess import preprocess

    if not validation.get("passed"):
        raise DataError(f"dataset {dataset['dataset_id']} did not pass validation")
    cfg = make_config(params)
    return preprocess(dataset["uri"], cfg, run_dir_for(cfg, run_id)).to_dict()


def baseline_task(params: dict, run_id: str, prepared: dict) -> dict:
    from pipeline.baseline import run_baselines

    cfg = make_config(params)
    return run_baselines(prepared["uri"], cfg, run_dir_for(cfg, run_id), prepared["channels"])


def train_task(params: dict, run_id: str, prepared: dict) -> dict:
    from pipeline.train import train

    cfg = make_config(params)
    return train(prepared["uri"], cfg, run_dir_for(cfg, run_id), prepared["channels"]).to_dict()


def evaluate_task(
    params: dict, run_id: str, prepared: dict, baselines: dict, trained: dict, validation: dict
) -> dict:
    from pipeline.evaluate import evaluate

    cfg = make_config(params)
    context = {
        "dataset_id": prepared["dataset_id"],
        "run_id": run_id,
        "validation": validation,
        "training": trained,
    }
    result = evaluate(
        prepared["uri"],
        baselines,
        cfg,
        run_dir_for(cfg, run_id),
        checkpoint=trained["checkpoint"],
        context=context,
    )
    return {**result.to_dict(), "dataset_id": prepared["dataset_id"]}


def register_task(params: dict, run_id: str, trained: dict, evaluation: dict) -> dict:
    from pipeline.io import write_json
    from pipeline.registry import register_model

    cfg = make_config(params)
    metrics = {"test": evaluation["summary"], "val_fg_iou": trained["val_fg_iou"]}
    model = register_model(
        trained["checkpoint"],
        cfg.registry,
        metrics,
        evaluation["dataset_id"],
        run_id,
        cfg.to_dict(),
    )
    out = {
        "model_uri": model.uri,
        "version": model.version,
        "report": evaluation["report_html"],
        "metrics": evaluation["summary_json"],
    }
    write_json(Path(run_dir_for(cfg, run_id)) / "registered.json", out)
    return out
