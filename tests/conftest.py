"""Shared fixtures: a tiny demo dataset, configs writing into tmp folders, the real ../shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.config import PipelineConfig, load_config
from pipeline.demo import DemoSpec, generate_demo

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CELLSEG_SHARED", REPO.parent / "shared")) / "data"

# Small and fast: 8 fields of 128 x 160 (one unlabelled 30min field among them).
TINY = {"data.demo_fields": 8, "data.demo_height": 128, "data.demo_width": 160,
        "train.epochs": 1, "train.steps_per_epoch": 2, "train.batch_size": 2,
        "train.crop_size": 64, "tracking.backend": "none"}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data beside the repo (../shared/data); tests needing it skip when absent."""
    if not SHARED.is_dir():
        pytest.skip(f"real data not found at {SHARED} (set CELLSEG_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A tiny demo dataset in the BBBC020 layout, generated once per session."""
    spec = DemoSpec(n_fields=TINY["data.demo_fields"], height=TINY["data.demo_height"],
                    width=TINY["data.demo_width"], seed=0)
    return generate_demo(tmp_path_factory.mktemp("demo") / "bbbc020", spec)


def make_cfg(tmp_path: Path, **overrides) -> PipelineConfig:
    """A tiny config whose data, runs and registry live under `tmp_path`."""
    base = {**TINY, "paths.data_dir": str(tmp_path / "data"),
            "paths.runs_dir": str(tmp_path / "runs"), "registry.uri": str(tmp_path / "registry")}
    return load_config(None, {**base, **overrides})


@pytest.fixture
def tiny_cfg(tmp_path, demo_root) -> PipelineConfig:
    """Config reading the session's tiny demo dataset, writing under tmp_path."""
    return make_cfg(tmp_path, **{"data.source": str(demo_root)})
