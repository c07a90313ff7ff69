"""The DAG file: parses fast, imports no heavy library, and is wired as pipeline/stages.py
declares, with a trigger form generated from the typed config."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config.params import PARAMS
from pipeline.ingest.layouts import LAYOUTS
from pipeline.stages import STAGE_NAMES, STAGES

DAG_FILE = Path(__file__).parents[2] / "dags" / "cell_segmentation.py"
HEAVY = [
    "torch",
    "torchvision",
    "segmentation_models_pytorch",
    "cv2",
    "great_expectations",
    "skimage",
    "wandb",
    "pipeline.train.stage",
]


def _bag():
    from airflow.dag_processing.dagbag import BundleDagBag

    # as the DAG processor and the task runner parse it: the folder (bundle) on sys.path
    bag = BundleDagBag(dag_folder=str(DAG_FILE.parent), bundle_path=DAG_FILE.parent)
    assert bag.import_errors == {}
    return bag


def _dag(dag_id: str = "cell_segmentation"):
    return _bag().dags[dag_id]


def test_dag_file_imports_no_heavy_libraries():
    code = (
        "import importlib.util, json, sys, time\n"
        f"sys.path.append({str(DAG_FILE.parent)!r})  # as BundleDagBag does\n"
        f"spec = importlib.util.spec_from_file_location('dag', {str(DAG_FILE)!r})\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "t = time.perf_counter(); spec.loader.exec_module(mod); dt = time.perf_counter() - t\n"
        f"print(json.dumps({{'heavy': [m for m in {HEAVY!r} if m in sys.modules], 'dt': dt}}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    # Airflow's own limit (core.dagbag_import_timeout, 30 s by default); parsing is repeated
    # every few minutes, and the check above keeps it light
    assert result["dt"] < 30.0, f"DAG file took {result['dt']:.1f}s to import"


def test_stage_graph_is_the_documented_pipeline():
    edges = {(up, s.name) for s in STAGES for up in s.inputs}
    assert edges == {
        ("ingest", "validate"),
        ("ingest", "preprocess"),
        ("validate", "preprocess"),
        ("validate", "evaluate"),
        ("preprocess", "baseline"),
        ("preprocess", "train"),
        ("preprocess", "evaluate"),
        ("baseline", "evaluate"),
        ("train", "evaluate"),
        ("preprocess", "register"),  # the gate re-scores production on these test fields
        ("train", "register"),
        ("evaluate", "register"),
    }
    order = {name: i for i, name in enumerate(STAGE_NAMES)}
    assert all(order[up] < order[s.name] for s in STAGES for up in s.inputs)  # runnable in order


def test_task_graph_follows_the_stage_graph():
    dag = _dag()
    edges = {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids}
    assert edges == {(up, s.name) for s in STAGES for up in s.inputs}
    for stage in STAGES:
        task = dag.get_task(stage.name)
        assert task.retries == stage.retries >= 1 and task.doc_md == stage.doc
    assert dag.get_task("train").execution_timeout.total_seconds() == 6 * 3600
    assert dag.doc_md and "ingest" in dag.doc_md


def test_schedules_assets_pool_and_timeouts():
    from pipeline.stages import DATASET_ASSET, MODEL_ASSET, RUN_TIMEOUT_S, TRAINING_POOL

    train = _dag()
    # weekly (default) or a new dataset; no catch-up of missed weeks
    assert "expression='0 0 * * 0'" in repr(train.timetable.timetable)
    assert DATASET_ASSET in str(train.timetable.asset_condition)
    assert not train.catchup and train.dagrun_timeout.total_seconds() == RUN_TIMEOUT_S
    assert train.default_args["retry_exponential_backoff"] is True
    assert train.get_task("train").pool == TRAINING_POOL
    # register updates the model Asset through an alias, only when production changes
    assert [a.name for a in train.get_task("register").outlets] == [f"{MODEL_ASSET}-updates"]
    assert all(t.execution_timeout for t in train.tasks)
    segment = _dag("segment_new_images")
    assert MODEL_ASSET in str(segment.timetable.asset_condition) and not segment.catchup
    assert segment.get_task("segment").execution_timeout and segment.doc_md


def test_trigger_form_is_generated_from_the_config():
    params = _dag().params
    assert {p.name for p in PARAMS} | {"config_file", "overrides"} == set(params)
    layout = params.get_param("layout").schema
    assert layout["enum"] == ["", *LAYOUTS]  # a drop-down; "" keeps the config file's value
    assert params.get_param("target").schema["enum"] == ["", "cells", "nuclei"]
    assert "watershed" in params.get_param("baselines").schema["examples"]
    assert params.get_param("epochs").schema["exclusiveMinimum"] == 0


def test_schedule_is_a_clock_or_the_asset_alone(monkeypatch):
    from airflow.sdk import Asset

    from pipeline.stages import DATASET_ASSET

    monkeypatch.syspath_prepend(str(DAG_FILE.parent))
    from cellseg_schedule import clock_or_asset

    for off in (" None ", ""):
        monkeypatch.setenv("CELLSEG_TRAIN_SCHEDULE", off)
        assert clock_or_asset("CELLSEG_TRAIN_SCHEDULE", "@weekly", DATASET_ASSET) == [
            Asset(DATASET_ASSET)
        ]
    monkeypatch.setenv("CELLSEG_TRAIN_SCHEDULE", "30 2 * * *")
    both = clock_or_asset("CELLSEG_TRAIN_SCHEDULE", "@weekly", DATASET_ASSET)
    assert "expression='30 2 * * *'" in repr(both.timetable)
    assert DATASET_ASSET in str(both.asset_condition)
    # a helper, not a DAG file: .airflowignore keeps the DAG processor from parsing it
    assert {stat.file for stat in _bag().dagbag_stats} == {
        "cell_segmentation.py",
        "segment_new_images.py",
    }
    monkeypatch.setenv("CELLSEG_TRAIN_SCHEDULE", "every tuesday")
    with pytest.raises(ValueError, match=r"\$CELLSEG_TRAIN_SCHEDULE='every tuesday'.*'none'"):
        clock_or_asset("CELLSEG_TRAIN_SCHEDULE", "@weekly", DATASET_ASSET)
