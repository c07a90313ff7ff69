"""
### segment_new_images

Segments new microscopy images with the **production** model of the registry.

- Looks for images (TIF, PNG, JPEG, BMP) in `predict.images` (a folder, `data/inbox` by
  default, or an `s3://bucket/prefix` with `data.s3_endpoint_url`) every 30 minutes
  (`$CELLSEG_SEGMENT_SCHEDULE`, cron; `none`: never on a clock) and whenever a model is
  registered (the `cellseg-model` Asset that `cell_segmentation`'s register task emits).
- Writes into `predict.out` (`data/segmented`): `<image>_labels.tif` (instance labels,
  0 = background), `<image>_overlay.png`, `<image>_objects.csv` (per object: area, centroid,
  mean intensity per channel; in µm when the pixel size is known) and `images.csv` (per image:
  object count, model).
- Each image is segmented once, ever: images are recognised by their content (`.done/`), so a
  re-run, a retry or a renamed copy does nothing twice.

Params override the config (`predict.*`); empty keeps the config's value.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException
from cellseg_schedule import clock_or_asset

from pipeline.stages import MODEL_ASSET


@task(retries=2, retry_exponential_backoff=True, execution_timeout=timedelta(hours=2))
def segment(params=None) -> dict:
    """Segment every image of the inbox not segmented before, with the production model."""
    from airflow.sdk import Connection

    from pipeline.segment.inbox import segment_new_images
    from pipeline.stages import fail_fast
    from pipeline.storage import use_s3_connection

    use_s3_connection(Connection.get)  # $CELLSEG_S3_CONN_ID, when set
    return fail_fast(AirflowFailException, segment_new_images, dict(params))


@dag(
    dag_id="segment_new_images",
    schedule=clock_or_asset("CELLSEG_SEGMENT_SCHEDULE", "*/30 * * * *", MODEL_ASSET),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=3),
    doc_md=__doc__,
    tags=["cellseg", "inference"],
    params={
        "config_file": Param(None, type=["null", "string"], description="YAML config file"),
        "images": Param(
            "",
            type="string",
            description="folder of new images (TIF, PNG, JPEG, BMP) [predict.images]",
        ),
        "out": Param("", type="string", description="output folder [predict.out]"),
        "model": Param("", type="string", description="alias or version [predict.model]"),
    },
)
def segment_new_images_dag():
    segment()


segment_new_images_dag()
