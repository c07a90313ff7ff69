"""What ``cellseg models list | show | promote | rollback | download`` do, and how ``predict``
finds its model; each returns a JSON-able value for the CLI."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.atomic import require_empty_folder
from pipeline.config import PipelineConfig
from pipeline.registry.aliases import PRODUCTION, aliases, current, history, move, rollback
from pipeline.registry.versions import Registry, fetch_model, is_version_folder, verify_version

log = logging.getLogger(__name__)


def _aliases_by_version(reg: Registry) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for name in aliases(reg):
        if entry := current(reg, name):
            out.setdefault(int(entry["version"]), []).append(name)
    return out


def list_models(cfg: PipelineConfig, incomplete: bool = False) -> list[dict[str, Any]]:
    """One row per complete version (newest first); with `incomplete`, the claims of
    registrations that died before publishing (invisible to every reader)."""
    reg = Registry(cfg.registry)
    if incomplete:
        return [
            {"version": v, "uri": reg.uri(v), "state": "incomplete"} for v in reg.versions(True)
        ]
    held, rows = _aliases_by_version(reg), []
    for v in reversed(reg.versions()):
        meta = reg.metadata(v)
        net = meta["metrics"]["test"].get("unet", {})
        rows.append(
            {
                "version": v,
                "aliases": held.get(v, []),
                "model_id": meta["model_id"][:12],
                "run_id": meta["run_id"],
                "dataset_id": meta["dataset_id"],
                "test_f1": net.get("f1"),
                "test_fg_iou": net.get("fg_iou"),
                "registered_at": meta.get("registered_at"),
                "uri": reg.uri(v),
            }
        )
    return rows


def show_model(cfg: PipelineConfig, ref: str) -> dict[str, Any]:
    """A version's metadata (without its config), aliases, human-readable card, and the
    history of every alias that ever pointed at it."""
    reg = Registry(cfg.registry)
    v = reg.resolve(ref)
    meta = {k: val for k, val in reg.metadata(v).items() if k != "config"}
    moves = [e for a in aliases(reg) for e in history(reg, a) if int(e["version"]) == v]
    return {
        **meta,
        "uri": reg.uri(v),
        "aliases": _aliases_by_version(reg).get(v, []),
        "alias_history": moves,
        "model_card_md": reg.read(v, "MODEL_CARD.md").decode(),
    }


def promote(cfg: PipelineConfig, ref: str, alias: str = PRODUCTION, reason: str = "") -> dict:
    """Point `alias` at version `ref` by hand (the gate is a human's decision here)."""
    from pipeline.tracking import move_model_alias

    reg = Registry(cfg.registry)
    v = reg.resolve(ref)
    entry = move(reg, alias, v, "manual", reason or "promoted by hand (cellseg models promote)")
    move_model_alias(cfg, v, alias)
    return entry


def rollback_alias(cfg: PipelineConfig, alias: str = PRODUCTION, to: str | None = None) -> dict:
    """Move `alias` back to its previous version (or to version `to`)."""
    from pipeline.tracking import move_model_alias

    reg = Registry(cfg.registry)
    entry = rollback(reg, alias, reg.resolve(to) if to else None)
    move_model_alias(cfg, int(entry["version"]), alias)
    return entry


def download(cfg: PipelineConfig, ref: str, out: str) -> dict[str, Any]:
    """Copy version `ref` (number or alias) into the folder `out`, verified."""
    reg = Registry(cfg.registry)
    v = reg.resolve(ref)
    require_empty_folder(out)
    return {"version": v, "folder": str(reg.fetch(v, out)), "uri": reg.uri(v)}


@contextlib.contextmanager
def model_for_predict(cfg: PipelineConfig, ref: str | None) -> Iterator[str]:
    """The model folder `predict` reads, verified when it is a registered version: `ref` is a
    model folder, a run's train/ folder, a version's URI (folder or s3://), or a version number
    or alias of the configured registry (default: ``production``). Remote versions are copied
    into a temporary folder that is removed afterwards (never into the output folder)."""
    ref = ref or cfg.predict.model
    with tempfile.TemporaryDirectory(prefix="cellseg-model-") as tmp:
        if ref and ref.startswith("s3://"):
            yield str(fetch_model(ref, tmp, cfg.registry.s3_endpoint_url))
        elif ref and Path(ref).exists():
            if is_version_folder(ref):
                verify_version(Path(ref), ref)
            yield ref
        else:
            reg = Registry(cfg.registry)
            v = reg.resolve(ref or PRODUCTION)
            log.info("predicting with %s (%s)", reg.uri(v), ref or PRODUCTION)
            yield str(reg.fetch(v, tmp))
