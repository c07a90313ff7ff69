"""The docker-compose topology as local processes: PostgreSQL (metadata database), the Airflow
API server, scheduler, DAG processor and triggerer (LocalExecutor), and a real S3 server.
Training runs are triggered through the REST API with params, like a user in the UI; the model
lands in the S3 registry; its Asset starts segment_new_images, which segments each new image of
the inbox exactly once."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import boto3
import httpx
import numpy as np
import pandas as pd
import pytest
import tifffile

from pipeline.conventions import safe_name
from pipeline.stages import STAGE_NAMES
from tests.airflow_helpers import airflow_env
from tests.conftest import free_port
from tests.postgres_server import Postgres


def _start(cmd: list[str], env: dict, log_path) -> subprocess.Popen:
    # Own process group: stopping it also stops the LocalExecutor workers it forked.
    return subprocess.Popen(
        cmd, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    for proc in procs:
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait(predicate, timeout: float, what: str, logs) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (httpx.HTTPError, KeyError):
            pass
        time.sleep(2)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs if p.exists())
    pytest.fail(f"timed out waiting for {what}\n{tails}")


@pytest.fixture
def postgres():
    pg = Postgres()
    yield pg.start()
    pg.stop()


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".lock")
    }


def _image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    tifffile.imwrite(path, rng.integers(0, 4000, (2, 96, 128), np.uint16))  # c1, c5


@pytest.mark.slow
def test_stack_on_postgres_trains_registers_and_segments_new_images(tmp_path, s3_server, postgres):
    port = free_port()
    cfg_file = tmp_path / "stack.yaml"
    cfg_file.write_text(
        "data:\n  demo_fields: 8\n  demo_height: 128\n  demo_width: 160\n"
        "train:\n  epochs: 1\n  steps_per_epoch: 3\n  batch_size: 4\n  crop_size: 64\n"
        "registry:\n  uri: s3://stack-models/registry\n"  # endpoint: the Airflow connection
        "tracking:\n  backend: none\n"
    )
    inbox = tmp_path / "data" / "inbox"
    inbox.mkdir(parents=True)
    _image(inbox / "a.tif", 1)
    _image(inbox / "b.tif", 2)
    env = airflow_env(tmp_path)
    env.update(
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=postgres,
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__HOST="127.0.0.1",
        # only the model Asset starts segment_new_images here: a cron (even a yearly one, whose
        # last interval catchup=False still runs) queued a scheduled run ahead of the asset one;
        # when its first start failed, its retry's backoff held the asset run past the wait
        CELLSEG_SEGMENT_SCHEDULE="none",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__API_AUTH__JWT_SECRET="cellseg-test-secret",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="2",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        CELLSEG_CONFIG=str(cfg_file),
        CELLSEG_TRAIN_SCHEDULE="none",  # only the runs triggered here (and dataset Assets)
        CELLSEG_S3_CONN_ID="cellseg_s3",
        AIRFLOW_CONN_CELLSEG_S3=json.dumps(
            {
                "conn_type": "aws",
                "login": "cellseg",
                "password": "cellseg-secret",
                "extra": {"endpoint_url": s3_server},
            }
        ),
    )
    env.pop("AWS_ENDPOINT_URL", None)
    for cmd in (
        ["airflow", "db", "migrate"],
        ["airflow", "pools", "set", "cellseg_training", "1", "one training at a time"],
    ):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{cmd}: {done.stdout[-2000:]} {done.stderr[-3000:]}"
    names = ("api-server", "scheduler", "dag-processor", "triggerer")
    logs = [tmp_path / f"{name}.log" for name in names]
    procs = [
        _start(["airflow", "api-server", "--port", str(port), "--host", "127.0.0.1"], env, logs[0]),
        *(
            _start(["airflow", name], env, log)
            for name, log in zip(names[1:], logs[1:], strict=True)
        ),
    ]
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(f"{base}/api/v2/version").status_code == 200, 180, "API", logs)
        token = httpx.get(f"{base}/auth/token").json()["access_token"]
        api = httpx.Client(
            base_url=f"{base}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        for dag_id in ("cell_segmentation", "segment_new_images"):
            _wait(lambda d=dag_id: api.get(f"/dags/{d}").status_code == 200, 180, dag_id, logs)

        def trigger(dag_id: str, conf: dict) -> str:
            created = api.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
            assert created.status_code == 200, created.text
            return created.json()["dag_run_id"]

        def state(dag_id: str, run_id: str) -> str:
            return api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"]

        def finished(dag_id: str, run_id: str) -> str:
            got = _wait(
                lambda: state(dag_id, run_id) in ("success", "failed") and state(dag_id, run_id),
                600,
                f"{dag_id} {run_id}",
                logs,
            )
            assert got == "success", "\n".join(p.read_text()[-3000:] for p in logs)
            return got

        first = trigger("cell_segmentation", {"epochs": 1, "overrides": {"train.seed": 1}})
        _wait(lambda: state("cell_segmentation", first) == "running", 120, "run 1", logs)
        second = trigger("cell_segmentation", {"epochs": 1})  # during the first
        finished("cell_segmentation", first)
        first_dir = tmp_path / "runs" / safe_name(first)
        before = _snapshot(first_dir)
        assert "train/model/weights.safetensors" in before and "registered.json" in before
        finished("cell_segmentation", second)
        assert _snapshot(first_dir) == before  # the second run left the first's files alone
        assert len(list((tmp_path / "runs").glob("manual__*"))) == 2
        tis = api.get(f"/dags/cell_segmentation/dagRuns/{second}/taskInstances").json()
        assert {t["task_id"]: t["state"] for t in tis["task_instances"]} == dict.fromkeys(
            STAGE_NAMES, "success"
        )
        xcom = api.get(
            f"/dags/cell_segmentation/dagRuns/{first}/taskInstances/register/"
            "xcomEntries/return_value"
        ).json()
        registered = xcom["value"] if isinstance(xcom["value"], dict) else json.loads(xcom["value"])
        assert registered["model_uri"] == "s3://stack-models/registry/cellseg-unet/v0001"

        # the model Asset started segment_new_images: a and b segmented once, with production
        def segment_runs(done_only: bool = True) -> list[dict]:
            runs = api.get("/dags/segment_new_images/dagRuns").json()["dag_runs"]
            busy = [r for r in runs if r["state"] not in ("success", "failed")]
            return [] if done_only and busy else runs

        def asset_run_done() -> list[dict]:
            runs = segment_runs()
            return runs if any(r["run_type"] == "asset_triggered" for r in runs) else []

        runs = _wait(asset_run_done, 300, "segment_new_images after register", logs)
        assert all(r["state"] == "success" for r in runs), runs  # before any model: a no-op
        out = tmp_path / "data" / "segmented"
        stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*_labels.tif")}
        assert set(stamps) == {"a_labels.tif", "b_labels.tif"}
        _image(inbox / "c.tif", 3)
        finished("segment_new_images", trigger("segment_new_images", {}))
        assert {p.name: p.stat().st_mtime_ns for p in out.glob("[ab]_labels.tif")} == stamps
        assert sorted(pd.read_csv(out / "images.csv")["image"]) == ["a.tif", "b.tif", "c.tif"]
        assert len(list((out / ".done").glob("*.json"))) == 3
    finally:
        _stop(procs)
    s3 = boto3.client("s3", endpoint_url=s3_server)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="stack-models")["Contents"]}
    version = "registry/cellseg-unet/v0001"
    files = ("claim.json", "metadata.json", "card.json", "weights.safetensors", "MODEL_CARD.md")
    assert {f"{version}/{n}" for n in (*files, "manifest.json")} <= keys
    assert "registry/cellseg-unet/v0002/manifest.json" in keys
    assert "registry/cellseg-unet/aliases/production/000001.json" in keys
    card = json.loads(
        s3.get_object(Bucket="stack-models", Key=f"{version}/metadata.json")["Body"].read()
    )
    assert {"unet", "otsu"} <= set(card["metrics"]["test"])
