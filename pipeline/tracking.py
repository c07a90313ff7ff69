"""Experiment tracking with Weights & Biases: offline by default, online when a key is set.

Offline runs land in ``<run_dir>/wandb/`` and can be uploaded later with ``wandb sync``.
``tracking.backend=none`` turns tracking off; every call is then a no-op.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.config import PipelineConfig

log = logging.getLogger(__name__)


class Tracker:
    def __init__(self, run: Any = None):
        self.run = run

    def log(self, values: dict[str, float], step: int | None = None) -> None:
        if self.run is not None:
            self.run.log(values, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    @property
    def ref(self) -> str | None:
        """``project/run-id`` of the W&B run (None when not tracking)."""
        return None if self.run is None else f"{self.run.project}/{self.run.id}"


@contextmanager
def track(cfg: PipelineConfig, run_dir: str, name: str, job_type: str):
    """Yield a Tracker for one stage; the W&B run is finished when the block exits."""
    t = cfg.tracking
    if t.backend == "none" or t.mode == "disabled":
        yield Tracker()
        return
    import wandb

    mode = t.mode
    if mode == "online" and not os.environ.get("WANDB_API_KEY"):
        log.warning("tracking.mode=online but WANDB_API_KEY is not set; logging offline")
        mode = "offline"
    os.makedirs(run_dir, exist_ok=True)
    # Stages of one pipeline run share a W&B group named after the run folder.
    run = wandb.init(
        project=t.project,
        group=os.path.basename(os.path.abspath(run_dir)),
        name=name,
        job_type=job_type,
        dir=run_dir,
        mode=mode,
        config=cfg.to_dict(),
        reinit="finish_previous",
        settings=wandb.Settings(silent=True, console="off"),
    )
    try:
        yield Tracker(run)
    finally:
        run.finish()


def log_model(
    cfg: PipelineConfig,
    run_dir: str,
    folder: Path,
    version: int,
    aliases: list[str],
    metadata: dict[str, Any],
) -> str | None:
    """Log a registered model folder as a W&B model artifact named after the registry's model,
    with the registry's aliases (and ``v<version>``); returns ``project/name:v<version>`` or
    None when not tracking. Offline runs keep it for ``wandb sync``."""
    name = cfg.registry.model_name
    job = f"register-{os.path.basename(os.path.abspath(run_dir))}"
    with track(cfg, run_dir, name=job, job_type="register") as tracker:
        if tracker.run is None:
            return None
        import wandb

        artifact = wandb.Artifact(name, type="model", metadata={**metadata, "version": version})
        artifact.add_dir(str(folder))
        tracker.run.log_artifact(artifact, aliases=[f"registry-v{version}", *aliases])
        return f"{cfg.tracking.project}/{name}:registry-v{version}"


def move_model_alias(cfg: PipelineConfig, version: int, alias: str) -> None:
    """Give the W&B model artifact of registry `version` the `alias` too (W&B moves it off the
    version that had it). Online tracking only; a W&B failure is logged, never fatal: the
    registry, not W&B, is the source of truth."""
    t = cfg.tracking
    if t.backend == "none" or t.mode != "online" or not os.environ.get("WANDB_API_KEY"):
        return
    try:
        import wandb

        name = f"{t.project}/{cfg.registry.model_name}:registry-v{version}"
        artifact = wandb.Api().artifact(name, type="model")
        if alias not in artifact.aliases:
            artifact.aliases.append(alias)
            artifact.save()
    except Exception as exc:  # noqa: BLE001 - W&B is a mirror of the registry
        log.warning("W&B alias %s not moved to %s: %s", alias, version, exc)
