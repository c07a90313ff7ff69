"""Acceptance on real data: every classical method on the Cell Tracking Challenge sets in
../shared/data/ctc (split by contiguous frame blocks; the last frames are the test split).

The watershed method must beat Otsu clearly on instance F1 at IoU 0.5. Runs
benchmarks/classical_ctc.py's pipeline; about 30 s per dataset.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from pipeline.preprocess.samples import load_split
from pipeline.rundir import RunDir
from pipeline.segment.classical import METHODS
from tests.conftest import REPO

BENCH = REPO / "benchmarks" / "classical_ctc.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("classical_ctc", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Fluo-N2DH-GOWT1", "Fluo-N2DL-HeLa"])
def test_watershed_clearly_beats_otsu_on_ctc(name, shared_data, tmp_path):
    if not (shared_data / "ctc" / name).is_dir():
        pytest.skip(f"{shared_data / 'ctc' / name} not found")
    result = load_benchmark().run_dataset(name, shared_data, tmp_path)
    summary = result.summary
    assert set(summary) == set(METHODS)
    f1_ws, f1_otsu = summary["watershed"]["f1"], summary["otsu"]["f1"]
    assert f1_ws >= 0.8 and f1_ws >= f1_otsu + 0.25, (f1_ws, f1_otsu)
    assert summary["watershed"]["aji"] > summary["otsu"]["aji"]
    data = json.loads(Path(result.summary_json).read_text())
    assert data["split_strategy"] == "contiguous"
    assert data["border_policy"] == "ignore_border_objects"  # silver truth skips the edge
    prepared = RunDir(Path(result.metrics_csv).parents[1]).preprocess
    frames = {
        split: [int(s.field_id.split("-t")[1]) for s in load_split(prepared, split)]
        for split in ("train", "val", "test")
    }
    test = [int(f.split("-t")[1]) for f in data["test_fields"]]
    assert test == frames["test"] and len(test) >= 5
    assert min(test) > max(frames["train"] + frames["val"])
    assert "blocks of consecutive frames" in Path(result.report_html).read_text()
