"""Experiment tracking with Weights & Biases: offline by default, online when a key is set.

Offline runs land in ``<run_dir>/wandb/`` and can be uploaded later with ``wandb sync``.
``tracking.backend=none`` turns tracking off; every call is then a no-op.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
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
