"""The stage graph, declared once: the CLI's ``run``, the Airflow DAG's tasks and the tests all
follow from `STAGES`.

    ingest -> validate -> preprocess -> (baseline, train) -> evaluate -> register

Each stage takes the run's config, its run folder and the outputs of its upstream stages (small
JSON-able dicts: paths, ids, metrics; never arrays) and returns such a dict. `run_stage` also
records the output in the run folder (``state/<stage>.json``), so stages can run one at a time
(``cellseg validate --run-id r1``) or on different workers; re-running a stage with the same
inputs rewrites the same files, so retries are safe.

This module imports nothing heavy: the Airflow DAG reads it when the file is parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.config import PipelineConfig
from pipeline.config.params import config_from_params
from pipeline.errors import ConfigError, DataError
from pipeline.jsonio import write_json
from pipeline.rundir import RunDir


@dataclass(frozen=True)
class Stage:
    name: str
    func: Callable[..., dict]  # (cfg, run, **outputs of `inputs`) -> JSON-able dict
    inputs: tuple[str, ...]  # upstream stages whose outputs it takes, by name
    doc: str
    retries: int = 2  # for failures other than bad data or config (those never retry)
    timeout_s: int = 3600  # the orchestrator stops a task running longer
    exclusive: bool = False  # one at a time across runs (GPU training: the TRAINING_POOL)
    outlet: str | None = None  # the Asset a successful run of the stage updates ...
    outlet_when: str | None = None  # ... only when this key of its output is true


# Orchestration facts the DAGs read (names only: no Airflow here).
MODEL_ASSET = "cellseg-model"  # updated by register when production changes
DATASET_ASSET = "cellseg-dataset"  # updated by whoever publishes new data: retrains
TRAINING_POOL = "cellseg_training"  # one slot: one training at a time
RUN_TIMEOUT_S = 12 * 3600  # a whole training run


def clock(cron: str) -> str | None:
    """A DAG's cron setting ($CELLSEG_TRAIN_SCHEDULE, $CELLSEG_SEGMENT_SCHEDULE) -> the cron, or
    None for ``none`` or empty: no clock, the DAG runs only on its Assets or when triggered."""
    return None if cron.strip().lower() in ("", "none") else cron


def check_encoder(cfg: PipelineConfig) -> None:
    """Fail before any work on an encoder or architecture name training would only reject later
    (imports torch; no weights are downloaded)."""
    from pipeline.segment.network import build_model

    build_model(cfg.train.encoder, in_channels=1, classes=1, architecture=cfg.train.architecture)


def _ingest(cfg: PipelineConfig, run: RunDir) -> dict:
    from pipeline.ingest.dataset import ingest

    check_encoder(cfg)  # the first stage rejects a bad encoder name before any work
    return {**ingest(cfg).to_dict(), "run_dir": str(run.root)}


def _validate(cfg: PipelineConfig, run: RunDir, ingest: dict) -> dict:
    from pipeline.validate.run import validate

    return validate(ingest["uri"], cfg, run.validate).summary()


def _preprocess(cfg: PipelineConfig, run: RunDir, ingest: dict, validate: dict) -> dict:
    from pipeline.preprocess.prepare import preprocess

    if not validate.get("passed"):
        raise DataError(f"dataset {ingest['dataset_id']} did not pass validation")
    return preprocess(ingest["uri"], cfg, run.preprocess).to_dict()


def _baseline(cfg: PipelineConfig, run: RunDir, preprocess: dict) -> dict:
    from pipeline.segment.baseline import run_baselines

    return run_baselines(preprocess["uri"], cfg, run, preprocess["channels"])


def _train(cfg: PipelineConfig, run: RunDir, preprocess: dict) -> dict:
    from pipeline.train.stage import train

    return train(
        preprocess["uri"], cfg, run, preprocess["channels"], preprocess["dataset_id"]
    ).to_dict()


def _evaluate(
    cfg: PipelineConfig,
    run: RunDir,
    preprocess: dict,
    baseline: dict,
    train: dict,
    validate: dict,
) -> dict:
    from pipeline.evaluate.stage import evaluate

    context = {
        "dataset_id": preprocess["dataset_id"],
        "run_id": run.run_id,
        "validation": validate,
        "training": train,
        "model_id": train["model_id"],  # the exact weights scored
    }
    result = evaluate(
        preprocess["uri"], baseline, cfg, run, model_dir=train["model_dir"], context=context
    )
    return {
        **result.to_dict(),
        "dataset_id": preprocess["dataset_id"],
        "model_id": train["model_id"],  # what register must find in the model folder
        "test_data": result.test_data,  # what was scored: the promotion gate compares on it
    }


def _register(
    cfg: PipelineConfig, run: RunDir, preprocess: dict, train: dict, evaluate: dict
) -> dict:
    from pipeline.registry.stage import register

    return register(cfg, run, train, evaluate, preprocess)


STAGES: tuple[Stage, ...] = (
    Stage(
        "ingest",
        _ingest,
        (),
        "Fetch the configured source (demo, download, S3, archives or a folder), parse its "
        "layout and write a content-addressed dataset version with splits by field.",
        timeout_s=2 * 3600,  # a download; data.download_deadline_s stops a stalled one sooner
    ),
    Stage(
        "validate",
        _validate,
        ("ingest",),
        "Great Expectations data checks; a critical failure stops the run before any training "
        "(result.json and Data Docs in the run folder).",
    ),
    Stage(
        "preprocess",
        _preprocess,
        ("ingest", "validate"),
        "Normalise every field (preprocess.normalisation) and store the train / val / test splits.",
    ),
    Stage(
        "baseline",
        _baseline,
        ("preprocess",),
        "Classical methods (the notebook's thresholds, marker watershed) on the test fields.",
    ),
    Stage(
        "train",
        _train,
        ("preprocess",),
        "Train the U-Net (GPU when present); keep the epoch with the best validation "
        "foreground IoU as the run's model (weights and model card).",
        retries=1,
        timeout_s=6 * 3600,
        exclusive=True,
    ),
    Stage(
        "evaluate",
        _evaluate,
        ("preprocess", "baseline", "train", "validate"),
        "Score every method and the network on the test fields: metrics, overlays, report.html.",
    ),
    Stage(
        "register",
        _register,
        ("preprocess", "train", "evaluate"),
        "Store the evaluated model as a new, never-overwritten registry version (alias "
        "staging); promote it to production if it beats production on the same test data.",
        outlet=MODEL_ASSET,
        outlet_when="promoted",  # production changed: segment_new_images uses the new model
    ),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def get_stage(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise ConfigError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")


def run_stage(
    name: str,
    params: dict[str, Any],
    run_id: str,
    upstream: dict[str, dict] | None = None,
    shared: bool = False,
) -> dict:
    """Run stage `name` of run `run_id` with `params` (see `pipeline.config.params`).

    `upstream` maps upstream stage names to their outputs; those missing are read from the run
    folder, where earlier stages recorded them. The output is recorded there too. The run is
    locked meanwhile (`RunDir.lock`): `shared` lets the parallel tasks of one orchestrated run
    hold it together; any other process on the run id is refused.
    """
    stage = get_stage(name)
    cfg = config_from_params(params)
    run = RunDir.create(cfg.paths.runs_dir, run_id)
    inputs = {}
    for up in stage.inputs:
        value = (upstream or {}).get(up) or run.read_state(up)
        if value is None:
            raise ConfigError(
                f"stage {name} needs the output of '{up}' for run {run_id}; "
                f"run `cellseg {up} --run-id {run_id}` first"
            )
        inputs[up] = value
    with run.lock(name, shared):
        result = stage.func(cfg, run, **inputs)
        write_json(run.state(name), result)
    return result


def fail_fast(error_type: type[Exception], func: Callable[..., dict], *args: Any) -> dict:
    """Call `func`; re-raise bad-data and bad-config errors as `error_type` (e.g. an
    orchestrator's no-retry exception), keeping the message that names the file and the fix."""
    try:
        return func(*args)
    except (DataError, ConfigError) as exc:
        raise error_type(str(exc)) from exc
