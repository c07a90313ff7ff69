import json
import os
import threading
from pathlib import Path

import boto3
import pytest
import torch

from pipeline.config import RegistryConfig
from pipeline.errors import DataError
from pipeline.registry.versions import fetch_model, register_model, verify_version
from pipeline.segment.artifact import WEIGHTS, load_model, save_model
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


def _exploit_bytes(marker: Path) -> bytes:
    import pickle

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return pickle.dumps(Exploit())


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_tampered_or_pickled_weights_are_refused_without_running_code(
    backend, tmp_path, checkpoint, request
):
    if backend == "s3":
        endpoint = request.getfixturevalue("s3_server")
        cfg = RegistryConfig(uri="s3://tamper/reg", model_name="m", s3_endpoint_url=endpoint)
    else:
        cfg = RegistryConfig(uri=str(tmp_path / "reg"), model_name="m")
    uri = register_model(checkpoint, cfg, {}, "ds", "run1").uri
    marker = tmp_path / "pwned"
    for payload, label in ((b"\x00" * 64, "flipped"), (_exploit_bytes(marker), "pickle")):
        if backend == "s3":
            bucket, key = uri.removeprefix("s3://").split("/", 1)
            client = boto3.client("s3", endpoint_url=endpoint)
            client.put_object(Bucket=bucket, Key=f"{key}/{WEIGHTS}", Body=payload)
            with pytest.raises(DataError, match=f"{WEIGHTS}: does not match the sha256"):
                fetch_model(uri, str(tmp_path / f"fetched-{label}"), endpoint)
        else:
            (Path(uri) / WEIGHTS).write_bytes(payload)
            with pytest.raises(DataError, match=f"{WEIGHTS}: does not match the sha256"):
                verify_version(Path(uri), uri)
    assert not marker.exists()


def test_only_the_evaluated_finite_model_above_the_floor_is_registered(tmp_path, checkpoint):
    cfg = RegistryConfig(uri=str(tmp_path / "reg"), model_name="m", min_f1=0.5)
    good = {"test": {"unet": {"f1": 0.9}}}
    with pytest.raises(DataError, match="not the ones evaluated"):
        register_model(checkpoint, cfg, good, "ds", "r", evaluated_id="0" * 64)
    with pytest.raises(DataError, match=r"F1 of the network's own instances 0\.300 is below"):
        register_model(checkpoint, cfg, {"test": {"unet": {"f1": 0.3}}}, "ds", "r")
    model, card = load_model(checkpoint, torch.device("cpu"))
    with torch.no_grad():
        next(iter(model.parameters())).fill_(float("nan"))
    save_model(model, card, tmp_path / "nan-model")
    with pytest.raises(DataError, match="non-finite weights"):
        register_model(str(tmp_path / "nan-model"), cfg, good, "ds", "r")
    assert not (tmp_path / "reg").exists()  # nothing was registered
    assert register_model(checkpoint, cfg, good, "ds", "r").version == 1
