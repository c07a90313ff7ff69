"""Register stage: the evaluated model becomes a new version, ``staging``, and ``production``
when it passes the gate (pipeline.registry.gate); the report gains the decision."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.config import PipelineConfig, RegistryConfig
from pipeline.conventions import now, who
from pipeline.errors import DataError
from pipeline.registry.aliases import PRODUCTION, STAGING, current, move
from pipeline.registry.card import code_version, library_versions, model_card_markdown
from pipeline.registry.gate import ROW, decide
from pipeline.registry.versions import Registry, version_name
from pipeline.rundir import RunDir
from pipeline.segment.artifact import model_folder, model_id, read_card

log = logging.getLogger(__name__)


def check_registrable(
    model: Path, evaluated_id: str | None, test: dict, cfg: RegistryConfig
) -> str:
    """The model id of `model` after the checks that keep a bad model out of the registry:
    its weights are the ones evaluated (`evaluated_id`), all finite, and its own instances
    (``test["unet"]``, the evaluation summary) reach ``cfg.min_f1``. DataError otherwise."""
    from pipeline.segment.artifact import load_weights

    current_id = model_id(model)
    if evaluated_id is not None and current_id != evaluated_id:
        raise DataError(
            f"{model}: its weights (sha256 {current_id[:12]}) are not the ones evaluated "
            f"({evaluated_id[:12]}); the model changed after evaluation: re-run evaluate"
        )
    weights = load_weights(model)
    bad = [k for k, v in weights.items() if v.is_floating_point() and not v.isfinite().all()]
    if bad:
        raise DataError(
            f"{model}: non-finite weights in {bad[:3]}; not registered (lower train.lr)"
        )
    f1 = test.get(ROW, {}).get("f1")
    if f1 is not None and f1 < cfg.min_f1:
        raise DataError(
            f"{model}: test F1 of the network's own instances {f1:.3f} is below "
            f"registry.min_f1={cfg.min_f1}; not registered"
        )
    return current_id


def version_metadata(
    cfg: PipelineConfig, run: RunDir, model: Path, train: dict, evaluate: dict, preprocess: dict
) -> dict[str, Any]:
    """Everything a version records about itself (metadata.json)."""
    counts = preprocess.get("counts", {})
    return {
        "model_name": cfg.registry.model_name,
        "model_id": evaluate.get("model_id") or model_id(model),
        "model_card": read_card(model).to_dict(),
        "dataset_id": evaluate["dataset_id"],
        "run_id": run.run_id,
        "metrics": {
            "test": evaluate["summary"],
            "val_fg_iou": train.get("val_fg_iou"),
            "val_f1": train.get("val_f1"),
        },
        "test_data": evaluate["test_data"],
        "training_data": {
            "layout": cfg.data.layout,
            "fields_text": ", ".join(f"{n} {split} fields" for split, n in counts.items()),
        },
        "report": evaluate["report_html"],
        "config": cfg.to_dict(),
        "code_version": code_version(),
        "libraries": library_versions(),
        "wandb_run": train.get("wandb_run"),
        "registered_at": now(),
        "registered_by": who(),
    }


def _existing(reg: Registry, model_id_: str, run_id: str) -> int | None:
    """A complete version of this run's model (a retried register task): reuse it."""
    for v in reversed(reg.versions()):
        if reg.manifest(v)["model_id"] == model_id_ and reg.metadata(v)["run_id"] == run_id:
            return v
    return None


def register(
    cfg: PipelineConfig, run: RunDir, train: dict, evaluate: dict, preprocess: dict
) -> dict[str, Any]:
    """Register the run's evaluated model; returns {model_uri, version, aliases, decision...}."""
    from pipeline.evaluate.report import add_section
    from pipeline.jsonio import write_json
    from pipeline.tracking import log_model

    model = model_folder(train["model_dir"])
    mid = check_registrable(model, evaluate.get("model_id"), evaluate["summary"], cfg.registry)
    reg = Registry(cfg.registry)
    meta = version_metadata(cfg, run, model, train, evaluate, preprocess)
    version = _existing(reg, mid, run.run_id)
    if version is None:
        version = reg.register(model, meta, model_card_markdown(meta)).version
    else:
        log.info("run %s's model is already %s; not registered twice", run.run_id, version)
    staging = current(reg, STAGING)
    if staging is None or int(staging["version"]) != version:
        move(reg, STAGING, version, "register", f"registered by run {run.run_id}")
    decision = decide(reg, version, meta, preprocess["uri"], cfg, run.register)
    if decision.promoted and (current(reg, PRODUCTION) or {}).get("version") != version:
        move(reg, PRODUCTION, version, "promote", decision.reason)
    aliases = [
        a for a in (STAGING, PRODUCTION) if (current(reg, a) or {}).get("version") == version
    ]
    add_section(
        evaluate["report_html"],
        "registry",
        "Registry",
        {
            "version": f"{reg.uri(version)} ({version_name(version)})",
            "aliases": ", ".join(aliases),
            "production": "promoted" if decision.promoted else "not promoted: candidate",
            "why": decision.reason,
        },
    )
    wandb_ref = log_model(cfg, str(run.root), model, version, aliases, {"model_id": mid})
    out = {
        "model_uri": reg.uri(version),
        "version": version,
        "model_id": mid,
        "aliases": aliases,
        "promoted": PRODUCTION in aliases,
        "decision": decision.to_dict(),
        "wandb_artifact": wandb_ref,
        "report": evaluate["report_html"],
        "metrics": evaluate["summary_json"],
    }
    write_json(run.registered, out)
    return out
