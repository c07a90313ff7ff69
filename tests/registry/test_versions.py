import json
import threading
from pathlib import Path

import boto3
import pytest

from pipeline.config import RegistryConfig
from pipeline.errors import DataError
from pipeline.registry.versions import fetch_model, register_model
from pipeline.segment.artifact import WEIGHTS, save_model
from pipeline.segment.card import ModelCard
from pipeline.segment.network import build_model


@pytest.fixture
def checkpoint(tmp_path):
    """A real model folder (weights.safetensors + card.json) of a small network."""
    card = ModelCard("resnet18", 1, ["foreground"], ["fluo"], "nuclei", "fluo", 1.0, 99.8)
    save_model(build_model(**card.arch), card, tmp_path / "model")
    return str(tmp_path / "model")


def test_local_versions_increase_and_never_overwrite(tmp_path, checkpoint):
    cfg = RegistryConfig(uri=str(tmp_path / "reg"), model_name="m")
    first = register_model(checkpoint, cfg, {"fg_iou": 0.5}, "ds1", "run1")
    card_before = (tmp_path / "reg/m/v0001/metadata.json").read_bytes()
    second = register_model(checkpoint, cfg, {"fg_iou": 0.6}, "ds1", "run2")
    assert (first.version, second.version) == (1, 2)
    assert (tmp_path / "reg/m/v0001/metadata.json").read_bytes() == card_before
    card = json.loads((tmp_path / "reg/m/v0002/metadata.json").read_text())
    assert card["metrics"] == {"fg_iou": 0.6} and card["run_id"] == "run2"
    assert not list((tmp_path / "reg/m").glob(".register-*"))  # no temporary leftovers


def test_local_concurrent_registrations_get_distinct_versions(tmp_path, checkpoint):
    cfg = RegistryConfig(uri=str(tmp_path / "reg"), model_name="m")
    versions = []
    threads = [
        threading.Thread(
            target=lambda i=i: versions.append(
                register_model(checkpoint, cfg, {}, "ds", f"run{i}").version
            )
        )
        for i in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == [1, 2, 3, 4, 5, 6]


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no model here"):
        register_model(str(tmp_path / "nope.pt"), RegistryConfig(uri=str(tmp_path)), {}, "d", "r")


def test_s3_registry_on_real_server(s3_server, checkpoint, tmp_path):
    cfg = RegistryConfig(uri="s3://models-test/registry", model_name="m", s3_endpoint_url=s3_server)
    first = register_model(checkpoint, cfg, {"fg_iou": 0.7}, "ds", "run1")  # creates the bucket
    second = register_model(checkpoint, cfg, {"fg_iou": 0.8}, "ds", "run2")
    assert first.uri == "s3://models-test/registry/m/v0001"
    assert second.version == 2
    client = boto3.client("s3", endpoint_url=s3_server)
    card = json.loads(
        client.get_object(Bucket="models-test", Key="registry/m/v0001/metadata.json")["Body"].read()
    )
    assert card["metrics"] == {"fg_iou": 0.7}  # version 1 untouched by version 2
    # A conditional write onto an existing version is refused by the server.
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="PreconditionFailed"):
        client.put_object(
            Bucket="models-test", Key="registry/m/v0001/metadata.json", Body=b"x", IfNoneMatch="*"
        )
    fetched = fetch_model(first.uri, str(tmp_path / "fetched"), s3_server)
    assert (fetched / WEIGHTS).read_bytes() == (Path(checkpoint) / WEIGHTS).read_bytes()
