"""
### cell_segmentation

Segments cells (or nuclei) in fluorescence microscopy, BBBC020 first:

`ingest` -> `validate` -> `preprocess` -> (`baseline`, `train`) -> `evaluate` -> `register`

- **ingest**: parse the configured dataset (default: the built-in demo in BBBC020 layout) into a
  content-addressed dataset version.
- **validate**: data checks; a critical failure stops the run before any training.
- **preprocess**: normalise and split by field into train / val / test.
- **baseline**: classical methods on the test fields.
- **train**: a segmentation-models-pytorch U-Net (GPU when present).
- **evaluate**: every method and the network scored on the test fields; `report.html`.
- **register**: store the model with its card and metrics as a new, never-overwritten version.

**When it runs**: on the schedule in `$CELLSEG_TRAIN_SCHEDULE` (cron or preset, default
`@weekly`; `none` for manual runs only; missed runs are not caught up) and whenever the
`cellseg-dataset` Asset is updated (a new dataset published: an upstream DAG with it as an
outlet, or `POST /api/v2/assets/events`). `register` updates the `cellseg-model` Asset when the
new model becomes production, which starts `segment_new_images`.

Every artifact of a run lives in `runs/<run_id>/`, so two runs never collide. Parameters left
empty keep the value of the config file (or the built-in defaults); `overrides` takes any
`{"section.key": value}`. Tasks pass only small values (paths, ids, metrics) through XCom. Bad
data or a bad setting fails the run at once (retrying cannot fix a file); other failures retry
with exponential backoff. Training runs in the `cellseg_training` pool (one slot: one training
at a time on the GPU); every task has a timeout, and the run a `dagrun_timeout`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, AssetAlias, Param, dag, task
from airflow.sdk.exceptions import AirflowFailException
from cellseg_schedule import clock_or_asset

from pipeline.config.params import PARAMS, json_schema
from pipeline.stages import DATASET_ASSET, RUN_TIMEOUT_S, STAGES, TRAINING_POOL

# The trigger form: the run parameters of pipeline/config/params.py, with types and drop-downs
# generated from the typed config.
TRIGGER_FORM = {
    "config_file": Param(
        None, type=["null", "string"], description="YAML config file (default: $CELLSEG_CONFIG)"
    ),
    **{p.name: Param(**json_schema(p)) for p in PARAMS},
    "overrides": Param({}, type="object", description='any {"section.key": value}'),
}


@task
def run_stage(stage: str, upstream: dict, params=None, run_id=None) -> dict:
    """One stage of the pipeline (pipeline/stages.py) for this DAG run."""
    from airflow.sdk import Connection, get_current_context

    from pipeline.stages import fail_fast, get_stage
    from pipeline.stages import run_stage as run
    from pipeline.storage import use_s3_connection

    use_s3_connection(Connection.get)  # $CELLSEG_S3_CONN_ID, when set
    # shared: this DAG run's parallel tasks hold the run folder together; others are refused
    result = fail_fast(AirflowFailException, run, stage, dict(params), run_id, upstream, True)
    spec = get_stage(stage)
    if spec.outlet and (spec.outlet_when is None or result.get(spec.outlet_when)):
        events = get_current_context()["outlet_events"]
        events[AssetAlias(f"{spec.outlet}-updates")].add(Asset(spec.outlet))
    return result


@dag(
    dag_id="cell_segmentation",
    schedule=clock_or_asset("CELLSEG_TRAIN_SCHEDULE", "@weekly", DATASET_ASSET),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(seconds=RUN_TIMEOUT_S),
    doc_md=__doc__,
    tags=["cellseg", "segmentation"],
    default_args={
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    },
    params=TRIGGER_FORM,
)
def cell_segmentation():
    # One task per stage, wired as pipeline/stages.py declares: each takes its upstream outputs.
    outputs = {}
    for stage in STAGES:
        extra = {"pool": TRAINING_POOL} if stage.exclusive else {}
        outputs[stage.name] = run_stage.override(
            task_id=stage.name,
            retries=stage.retries,
            execution_timeout=timedelta(seconds=stage.timeout_s),
            doc_md=stage.doc,
            outlets=[AssetAlias(f"{stage.outlet}-updates")] if stage.outlet else [],
            **extra,
        )(stage.name, {name: outputs[name] for name in stage.inputs})


cell_segmentation()
