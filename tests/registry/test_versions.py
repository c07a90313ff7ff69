"""Registered versions on both backends: round trip, races between processes, kills part-way,
a server killed mid-registration, tampered files and crafted pickles."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.config import RegistryConfig
from pipeline.errors import DataError
from pipeline.registry.store import RegistryUnavailable
from pipeline.registry.versions import MANIFEST, README, Registry, fetch_model
from pipeline.segment.artifact import WEIGHTS, load_model
from tests.conftest import Weed
from tests.registry.conftest import register


def test_round_trip_versions_are_complete_verified_and_never_overwritten(
    reg_cfg, model_dir, tmp_path
):
    reg = Registry(reg_cfg)
    assert reg.versions() == []
    assert [register(reg, model_dir, f1=f) for f in (0.7, 0.8)] == [1, 2]
    assert reg.versions() == [1, 2] and reg.versions(incomplete=True) == []
    meta = reg.metadata(1)
    assert meta["metrics"]["test"]["unet"]["f1"] == 0.7 and meta["version"] == 1
    assert reg.read(2, README).decode().startswith("# m v0002")
    # every object is write-once: the store refuses to replace any file of a version
    assert not reg.store.put_new(reg.key(1, WEIGHTS), b"other weights")
    assert not reg.store.put_new(reg.key(1, MANIFEST), b"{}")
    assert reg.metadata(1)["metrics"]["test"]["unet"]["f1"] == 0.7
    fetched = reg.fetch(2, tmp_path / "fetched")
    assert (fetched / WEIGHTS).read_bytes() == (model_dir / WEIGHTS).read_bytes()
    model, card = load_model(fetched)
    assert card.target == "nuclei" and sum(p.numel() for p in model.parameters()) > 0
    same = fetch_model(reg.uri(1), str(tmp_path / "by-uri"), reg_cfg.s3_endpoint_url)
    assert json.loads((same / "metadata.json").read_text())["version"] == 1
    with pytest.raises(DataError, match="no complete version 3"):
        reg.fetch(3, tmp_path / "nope")


RACER = """
import json, sys, time
from pipeline.config import RegistryConfig
from pipeline.registry.versions import Registry
from tests.registry.conftest import register
cfg, model, start, run = json.loads(sys.argv[1])
reg = Registry(RegistryConfig(**cfg))
while time.time() < start:
    time.sleep(0.005)
print(register(reg, __import__("pathlib").Path(model), run_id=run))
"""


def _python(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_registrations_racing_from_separate_processes_get_distinct_complete_versions(
    reg_cfg, model_dir
):
    start = time.time() + 8  # every process has imported torch by then; they start together
    procs = [
        _python(RACER, json.dumps([vars(reg_cfg), str(model_dir), start, f"run{i}"]))
        for i in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-800:] for _, err in outs]
    assert sorted(int(out.strip()) for out, _ in outs) == [1, 2, 3, 4]
    reg = Registry(reg_cfg)
    assert reg.versions() == [1, 2, 3, 4]
    assert sorted(reg.metadata(v)["run_id"] for v in reg.versions()) == [
        f"run{i}" for i in range(4)
    ]


KILLED = """
import json, os, signal, sys
from pathlib import Path
from pipeline.config import RegistryConfig
from pipeline.registry.versions import Registry
from tests.registry.conftest import register
cfg, model = json.loads(sys.argv[1])
reg = Registry(RegistryConfig(**cfg))
put = reg.store.put_new
def put_then_die(key, source):
    ok = put(key, source)
    if key.endswith("weights.safetensors"):
        os.kill(os.getpid(), signal.SIGKILL)  # killed half-way: weights written, no manifest
    return ok
reg.store.put_new = put_then_die
register(reg, Path(model))
"""


def test_a_registration_killed_half_way_leaves_no_visible_version(reg_cfg, model_dir, tmp_path):
    proc = _python(KILLED, json.dumps([vars(reg_cfg), str(model_dir)]))
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    reg = Registry(reg_cfg)
    assert reg.versions() == [] and reg.versions(incomplete=True) == [1]
    with pytest.raises(DataError, match="no complete version 1"):
        reg.fetch(1, tmp_path / "half")
    assert register(reg, model_dir) == 2  # a retry succeeds, on a fresh number
    assert reg.versions() == [2]


def test_a_server_killed_mid_registration_publishes_nothing_and_a_retry_succeeds(
    tmp_path, model_dir
):
    weed = Weed(tmp_path / "weed")
    weed.root.mkdir()
    endpoint = weed.start()
    try:
        cfg = RegistryConfig(uri="s3://killed/models", model_name="m", s3_endpoint_url=endpoint)
        reg = Registry(cfg)
        put = reg.store.put_new

        def put_then_kill_server(key, source):
            ok = put(key, source)
            if key.endswith(WEIGHTS):
                weed.stop(kill=True)
            return ok

        reg.store.put_new = put_then_kill_server
        with pytest.raises(RegistryUnavailable, match="s3://killed/models: writing .* failed"):
            register(reg, model_dir)
        weed.start()  # same data, same ports
        reg = Registry(cfg)
        assert reg.versions() == [] and reg.versions(incomplete=True) == [1]
        assert register(reg, model_dir) == 2
        assert reg.versions() == [2]
        reg.fetch(2, tmp_path / "fetched")  # complete and verified
    finally:
        weed.stop()


def _exploit_bytes(marker: Path) -> bytes:
    import pickle

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return pickle.dumps(Exploit())


def test_tampered_weights_and_crafted_pickles_are_refused_without_running_code(
    reg_cfg, model_dir, tmp_path
):
    from pipeline.registry.store import LocalStore

    reg = Registry(reg_cfg)
    register(reg, model_dir)
    register(reg, model_dir)
    marker = tmp_path / "pwned"
    for version, payload in ((1, b"\x00" * 64), (2, _exploit_bytes(marker))):
        key = reg.key(version, WEIGHTS)
        if isinstance(reg.store, LocalStore):  # an attacker with write access to the folder
            (reg.store.root / key).write_bytes(payload)
        else:  # or to the bucket: an unconditional overwrite
            reg.store.client.put_object(
                Bucket=reg.store.bucket, Key=reg.store._key(key), Body=payload
            )
        with pytest.raises(DataError, match=f"v000{version}/{WEIGHTS}: does not match the sha256"):
            reg.fetch(version, tmp_path / f"fetched-{version}")
    assert not marker.exists()
    # a pickle handed to the model loader directly is not unpickled either
    bad = tmp_path / "bad-model"
    bad.mkdir()
    (bad / WEIGHTS).write_bytes(_exploit_bytes(marker))
    (bad / "card.json").write_text((model_dir / "card.json").read_text())
    with pytest.raises(DataError, match="not readable safetensors"):
        load_model(bad)
    assert not marker.exists()


def test_an_unreachable_server_is_a_clear_retryable_error(model_dir):
    cfg = RegistryConfig(uri="s3://b/p", model_name="m", s3_endpoint_url="http://127.0.0.1:9")
    with pytest.raises(RegistryUnavailable, match="s3://b/p: .*unreachable"):
        Registry(cfg).versions()
