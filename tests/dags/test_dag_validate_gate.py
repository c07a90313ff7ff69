"""End to end through the real Airflow DAG: a planted critical defect stops the run at validate,
before any training or registration, and leaves the raw data untouched."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pipeline.ingest.demo import DemoSpec, field_names, generate_demo
from pipeline.stages import STAGE_NAMES
from tests.airflow_helpers import dags_test, task_states

DOWNSTREAM = STAGE_NAMES[STAGE_NAMES.index("validate") + 1 :]


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_planted_defect_fails_dag_at_validate(tmp_path):
    raw = generate_demo(tmp_path / "raw", DemoSpec(n_fields=8, height=128, width=160))
    field = field_names(8)[0]  # jw-Kontrolle1: a labelled field
    c1 = raw / "BBBC020_v1_images" / field / f"{field}_c1.TIF"
    tifffile.imwrite(c1, np.zeros_like(tifffile.imread(c1)), photometric="rgb")  # blank c1
    before = _digest(raw)

    conf = {
        "source": str(raw),
        "layout": "bbbc020",
        "target": "cells",
        "epochs": 1,
        "steps_per_epoch": 1,
        "tracking": "none",
        "registry_uri": str(tmp_path / "registry"),
    }
    code, log, run_id = dags_test(tmp_path, conf)
    assert run_id, log[-4000:]
    assert code != 0 and "state=failed" in log, log[-4000:]
    state = task_states(tmp_path, run_id)
    assert state["ingest"] == "success" and state["validate"] == "failed", state
    assert all(state[t] == "upstream_failed" for t in DOWNSTREAM), state
    # The failure names the expectation, the field, the file and observed vs expected.
    assert re.search(rf"image_not_blank\[c1\] .*{re.escape(field)} .*c1_std=0", log), log[-4000:]
    assert "Calculating Metrics" not in log  # GX progress bars stay out of the task log

    run_dir = tmp_path / "runs" / re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)
    summary = json.loads((run_dir / "validate" / "result.json").read_text())["summary"]
    assert "image_not_blank[c1]" in summary["failures"]
    assert (run_dir / "validate" / "data_docs" / "index.html").is_file()
    assert not (run_dir / "train").exists() and not (run_dir / "preprocess").exists()
    assert not (tmp_path / "registry").exists() or not any((tmp_path / "registry").rglob("*"))
    assert _digest(raw) == before  # raw data byte-identical
