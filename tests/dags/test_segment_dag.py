"""The segment_new_images DAG, run by Airflow: new images in the inbox are segmented with the
production model, each exactly once, with labels, overlays and measurements."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

from pipeline.config import RegistryConfig
from pipeline.registry.aliases import PRODUCTION, move
from pipeline.registry.versions import Registry
from pipeline.segment.artifact import save_model
from pipeline.segment.card import ModelCard
from pipeline.segment.network import build_model
from tests.airflow_helpers import dags_test
from tests.registry.conftest import register


@pytest.mark.slow
def test_new_images_are_segmented_once_with_the_production_model(tmp_path):
    card = ModelCard("resnet18", 1, ["foreground", "distance"], ["dna"], "nuclei", "dna", 1, 99)
    save_model(build_model(**card.arch), card, tmp_path / "model")
    reg = Registry(RegistryConfig(uri=str(tmp_path / "registry")))  # $CELLSEG_HOME/registry
    move(reg, PRODUCTION, register(reg, tmp_path / "model"), "manual", "test")
    inbox, out = tmp_path / "data/inbox", tmp_path / "data/segmented"
    inbox.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        tifffile.imwrite(inbox / f"{name}.tif", rng.integers(0, 4000, (96, 96), np.uint16))

    code, log, _ = dags_test(tmp_path, {}, dag_id="segment_new_images", timeout=600)
    assert code == 0 and "state=success" in log, log[-3000:]
    assert sorted(pd.read_csv(out / "images.csv")["image"]) == ["a.tif", "b.tif"]
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*_labels.tif")}
    assert set(stamps) == {"a_labels.tif", "b_labels.tif"}
    assert all((out / f"{s}_overlay.png").is_file() for s in "ab")

    tifffile.imwrite(inbox / "c.tif", rng.integers(0, 4000, (96, 96), np.uint16))
    code, log, _ = dags_test(tmp_path, {}, dag_id="segment_new_images", timeout=600)
    assert code == 0 and "state=success" in log, log[-3000:]
    assert sorted(pd.read_csv(out / "images.csv")["image"]) == ["a.tif", "b.tif", "c.tif"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("[ab]_labels.tif")} == stamps
    assert (out / "c_objects.csv").is_file()
