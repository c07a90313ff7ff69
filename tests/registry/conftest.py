"""Registry fixtures: a real model folder, and the same registry on both backends (a local
folder and a real S3 server), so every test runs on both."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pipeline.config import RegistryConfig
from pipeline.registry.card import model_card_markdown
from pipeline.registry.versions import Registry
from pipeline.segment.artifact import model_id, read_card, save_model
from pipeline.segment.card import ModelCard
from pipeline.segment.network import build_model


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A real model folder (weights.safetensors + card.json) of a small network."""
    card = ModelCard(
        "resnet18", 1, ["foreground", "distance"], ["fluo"], "nuclei", "fluo", 1.0, 99.8
    )
    folder = tmp_path_factory.mktemp("model") / "model"
    save_model(build_model(**card.arch), card, folder)
    return folder


@pytest.fixture(params=["local", "s3"])
def reg_cfg(request, tmp_path) -> RegistryConfig:
    """A fresh registry: a local folder, or a new bucket on the session's S3 server."""
    if request.param == "local":
        return RegistryConfig(uri=str(tmp_path / "registry"), model_name="m")
    endpoint = request.getfixturevalue("s3_server")
    prefix = f"t-{uuid.uuid4().hex[:10]}/models"  # one bucket: SeaweedFS gives each its volumes
    return RegistryConfig(
        uri=f"s3://registry-tests/{prefix}", model_name="m", s3_endpoint_url=endpoint
    )


def version_meta(model: Path, f1: float = 0.8, test_id: str = "t1", run_id: str = "run1") -> dict:
    """The metadata the register stage writes, for a model scored `f1` on test data `test_id`."""
    scores = {"f1": f1, "fg_iou": f1, "map": f1 - 0.1, "aji": f1 - 0.05, "fg_dice": f1}
    return {
        "model_id": model_id(model),
        "model_card": read_card(model).to_dict(),
        "dataset_id": "ds1",
        "run_id": run_id,
        "metrics": {"test": {"unet": scores, "watershed": scores}},
        "test_data": {"id": test_id, "text": "2 test fields of dataset ds1"},
        "code_version": "abc123",
        "libraries": {"torch": "x"},
        "registered_at": "2026-11-25T00:00:00+00:00",
    }


def register(reg: Registry, model: Path, **meta_kwargs) -> int:
    meta = version_meta(model, **meta_kwargs)
    return reg.register(model, meta, model_card_markdown({**meta, "model_name": reg.name})).version
