"""End to end: the real Airflow DAG on the demo dataset, from ingest to a registered model."""

import json
import re

import pytest

from pipeline.stages import STAGE_NAMES
from tests.airflow_helpers import dags_test, task_states


@pytest.mark.slow
def test_dag_runs_demo_end_to_end(tmp_path):
    conf = {
        "epochs": 2,
        "steps_per_epoch": 4,
        "overrides": {
            "data.demo_fields": 8,
            "data.demo_height": 160,
            "data.demo_width": 192,
            "train.batch_size": 4,
            "train.crop_size": 96,
        },
    }
    code, log, run_id = dags_test(tmp_path, conf)
    assert code == 0 and "state=success" in log, log[-4000:]
    states = task_states(tmp_path, run_id)
    assert states == dict.fromkeys(STAGE_NAMES, "success")
    run_dir = tmp_path / "runs" / re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)
    registered = json.loads((run_dir / "registered.json").read_text())
    model_dir = tmp_path / "registry" / "cellseg-unet" / "v0001"
    assert registered["model_uri"] == str(model_dir)
    assert (model_dir / "weights.safetensors").is_file() and (model_dir / "card.json").is_file()
    card = json.loads((model_dir / "metadata.json").read_text())
    summary = json.loads((run_dir / "evaluate" / "metrics_summary.json").read_text())
    methods = summary["methods"]
    assert {"unet", "unet_watershed", "otsu", "watershed"} <= set(methods)
    for values in methods.values():
        assert 0.0 <= values["fg_iou"] <= 1.0 and 0.0 <= values["fg_dice"] <= 1.0
    assert card["metrics"]["test"] == methods and card["dataset_id"] == summary["dataset_id"]
    assert (run_dir / "evaluate" / "report.html").stat().st_size > 10_000
    # W&B tracked the training offline inside the run folder.
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 3  # train, evaluate, register
    assert registered["wandb_artifact"] == "cellseg/cellseg-unet:registry-v1"
    # the first version passed the gate: staging and production, each with its history
    assert registered["aliases"] == ["staging", "production"]
    for alias, action in (("staging", "register"), ("production", "promote")):
        entries = sorted((tmp_path / "registry/cellseg-unet/aliases" / alias).glob("*.json"))
        trail = [json.loads(p.read_text()) for p in entries]
        assert [(e["seq"], e["version"], e["action"]) for e in trail] == [(1, 1, action)]
        assert trail[0]["model_id"] == registered["model_id"]
    assert "first version: no production model yet" in registered["decision"]["reason"]
