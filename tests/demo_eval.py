"""Helper for the evaluation tests: the tiny demo dataset through baseline and evaluate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.baseline import run_baselines
from pipeline.config import PipelineConfig
from pipeline.evaluate import EvalResult, evaluate
from pipeline.ingest import DatasetRef, ingest
from pipeline.preprocess import PreparedRef, preprocess


@dataclass
class DemoEvaluation:
    result: EvalResult
    dataset: DatasetRef
    prepared: PreparedRef
    run_dir: Path
    predictions: dict[str, str]


def evaluate_demo(
    cfg: PipelineConfig, run_dir: Path, validation: dict | None = None
) -> DemoEvaluation:
    """Ingest, preprocess, run `cfg.baseline.methods` and evaluate, all under `run_dir`."""
    dataset = ingest(cfg)
    prepared = preprocess(dataset.uri, cfg, str(run_dir))
    predictions = run_baselines(prepared.uri, cfg, str(run_dir), prepared.channels)
    context = {
        "dataset_id": dataset.dataset_id,
        "run_id": "test-run",
        "validation": validation or {"passed": True, "failures": [], "warnings": []},
    }
    result = evaluate(prepared.uri, predictions, cfg, str(run_dir), context=context)
    return DemoEvaluation(result, dataset, prepared, Path(run_dir), predictions)
