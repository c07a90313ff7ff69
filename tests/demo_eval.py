"""Helper for the evaluation tests: the tiny demo dataset through baseline and evaluate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.evaluate.scoring import EvalResult
from pipeline.evaluate.stage import evaluate
from pipeline.ingest.dataset import DatasetRef, ingest
from pipeline.preprocess.prepare import PreparedRef, preprocess
from pipeline.rundir import RunDir
from pipeline.segment.baseline import run_baselines


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
    run = RunDir(Path(run_dir))
    dataset = ingest(cfg)
    prepared = preprocess(dataset.uri, cfg, run.preprocess)
    predictions = run_baselines(prepared.uri, cfg, run, prepared.channels)
    context = {
        "dataset_id": dataset.dataset_id,
        "run_id": "test-run",
        "validation": validation or {"passed": True, "failures": [], "warnings": []},
    }
    result = evaluate(prepared.uri, predictions, cfg, run, context=context)
    return DemoEvaluation(result, dataset, prepared, Path(run_dir), predictions)
