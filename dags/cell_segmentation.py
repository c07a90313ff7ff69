"""
### cell_segmentation

Segments cells (or nuclei) in fluorescence microscopy, BBBC020 first:

`ingest` -> `validate` -> `preprocess` -> (`baseline`, `train`) -> `evaluate` -> `register`

- **ingest**: parse the configured dataset (default: the built-in demo in BBBC020 layout) into a
  content-addressed dataset version.
- **validate**: data checks; a critical failure stops the run before any training.
- **preprocess**: normalise and split by field into train / val / test.
- **baseline**: classical threshold methods on the test fields.
- **train**: a segmentation-models-pytorch U-Net (GPU when present).
- **evaluate**: foreground IoU / Dice for every method, `metrics_summary.json` and `report.html`.
- **register**: store the model with its metrics as a new, never-overwritten registry version.

Every artifact of a run lives in `runs/<run_id>/`. Leave a parameter empty to use the value from
the config file (or the built-in defaults); `overrides` takes any `{"section.key": value}`.
Tasks pass only small values (paths, ids, metrics) through XCom.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException


def _maybe(kind: str, description: str, **kw) -> Param:
    return Param(None, type=["null", kind], description=description, **kw)


@dag(
    dag_id="cell_segmentation",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cellseg", "segmentation"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=20)},
    params={
        "config_file": _maybe("string", "YAML config file (paths relative to CELLSEG_HOME)"),
        "layout": _maybe("string", "dataset layout: bbbc020 | ctc | folder"),
        "source": _maybe("string", "'demo' or a folder holding the dataset"),
        "target": _maybe("string", "label set to learn: cells | nuclei"),
        "epochs": _maybe("integer", "U-Net training epochs", minimum=1),
        "steps_per_epoch": _maybe("integer", "training steps per epoch", minimum=1),
        "encoder": _maybe("string", "smp encoder, e.g. resnet18, resnet34, efficientnet-b0"),
        "encoder_weights": _maybe("string", "'imagenet' when online; empty trains from scratch"),
        "device": _maybe("string", "auto | cpu | cuda"),
        "border_policy": _maybe(
            "string", "none | crop | ignore_border_predictions (BBBC020 skips border objects)"
        ),
        "border_margin": _maybe(
            "integer", "pixels cropped from each edge before scoring", minimum=0
        ),
        "registry_uri": _maybe("string", "registry folder or s3://bucket/prefix"),
        "tracking": _maybe("string", "wandb | none"),
        "overrides": Param({}, type="object", description='any {"section.key": value}'),
    },
)
def cell_segmentation():
    # Bad data or config fails at once (AirflowFailException skips retries): retrying cannot
    # fix a file or a setting. Other errors (a lost worker, a full disk) are retried.
    @task
    def ingest(params=None, run_id=None) -> dict:
        from pipeline.tasks import fail_fast, ingest_task

        return fail_fast(AirflowFailException, ingest_task, dict(params), run_id)

    @task
    def validate(dataset: dict, params=None, run_id=None) -> dict:
        from pipeline.tasks import fail_fast, validate_task

        return fail_fast(AirflowFailException, validate_task, dict(params), run_id, dataset)

    @task
    def preprocess(dataset: dict, validation: dict, params=None, run_id=None) -> dict:
        from pipeline.tasks import fail_fast, preprocess_task

        return fail_fast(
            AirflowFailException, preprocess_task, dict(params), run_id, dataset, validation
        )

    @task
    def baseline(prepared: dict, params=None, run_id=None) -> dict:
        from pipeline.tasks import baseline_task, fail_fast

        return fail_fast(AirflowFailException, baseline_task, dict(params), run_id, prepared)

    @task(retries=1, execution_timeout=timedelta(hours=6))
    def train(prepared: dict, params=None, run_id=None) -> dict:
        from pipeline.tasks import fail_fast, train_task

        return fail_fast(AirflowFailException, train_task, dict(params), run_id, prepared)

    @task
    def evaluate(
        prepared: dict, baselines: dict, trained: dict, validation: dict, params=None, run_id=None
    ) -> dict:
        from pipeline.tasks import evaluate_task, fail_fast

        return fail_fast(
            AirflowFailException,
            evaluate_task,
            dict(params),
            run_id,
            prepared,
            baselines,
            trained,
            validation,
        )

    @task
    def register(trained: dict, evaluation: dict, params=None, run_id=None) -> dict:
        from pipeline.tasks import fail_fast, register_task

        return fail_fast(
            AirflowFailException, register_task, dict(params), run_id, trained, evaluation
        )

    dataset = ingest()
    validation = validate(dataset)
    prepared = preprocess(dataset, validation)
    trained = train(prepared)
    evaluation = evaluate(prepared, baseline(prepared), trained, validation)
    register(trained, evaluation)


cell_segmentation()
