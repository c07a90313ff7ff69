"""The run folder: every artifact of one pipeline run lives under ``<paths.runs_dir>/<run_id>/``.

This is the only module that spells the layout::

    state/<stage>.json          each stage's output (what the next stage reads; the CLI's resume)
    validate/                   result.json, data_docs/
    preprocess/                 index.json, <split>/<field>.npz
    predictions/<method>/       <field>.tif label images of every method on the test split
    train/model/                the best epoch's model folder (weights.safetensors, card.json)
    train/checkpoint.pt         the last epoch's training state (to resume a killed training)
    evaluate/                   metrics, figures, overlays, report.html
    registered.json             where the run's model was registered
    wandb/                      offline experiment tracking

Tasks are idempotent: re-running a stage with the same inputs rewrites the same files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.conventions import safe_name
from pipeline.errors import DataError


class _In:
    """A read-only attribute of RunDir: the path ``<run folder>/<parts...>``."""

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    def __get__(self, run: RunDir, owner: type | None = None) -> Path:
        return run.root.joinpath(*self.parts)


@dataclass(frozen=True)
class RunDir:
    root: Path

    @classmethod
    def create(cls, runs_dir: str | Path, run_id: str) -> RunDir:
        """The folder of run `run_id` under `runs_dir`, created if missing."""
        root = Path(runs_dir) / safe_name(run_id)
        root.mkdir(parents=True, exist_ok=True)
        return cls(root)

    @property
    def run_id(self) -> str:
        return self.root.name

    def state(self, stage: str) -> Path:
        return self.root / "state" / f"{stage}.json"

    def read_state(self, stage: str) -> dict | None:
        """The recorded output of `stage`, or None if it has not run in this folder."""
        path = self.state(stage)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except ValueError as exc:
            raise DataError(
                f"{path}: corrupt stage state ({exc}); delete it and re-run that stage"
            ) from exc

    # Folders and files of the run (see the module docstring).
    validate = _In("validate")
    preprocess = _In("preprocess")
    predictions_root = _In("predictions")
    train = _In("train")
    model = _In("train", "model")
    checkpoint = _In("train", "checkpoint.pt")
    evaluate = _In("evaluate")
    registered = _In("registered.json")

    def predictions(self, method: str) -> Path:
        """Label images of `method` on the test split."""
        return self.predictions_root / method
