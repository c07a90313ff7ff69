"""The docker-compose topology as local processes: Airflow API server, scheduler and DAG
processor (LocalExecutor, SQLite) plus a real S3 server; a run is triggered through the REST API
like a user clicking "Trigger" in the UI, and the model must land in the S3 registry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import boto3
import httpx
import pytest

from pipeline.stages import STAGE_NAMES
from tests.airflow_helpers import airflow_env
from tests.conftest import free_port


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


@pytest.mark.slow
def test_trigger_through_api_registers_model_in_s3(tmp_path, s3_server):
    port = free_port()
    cfg_file = tmp_path / "stack.yaml"
    cfg_file.write_text(
        "data:\n  demo_fields: 8\n  demo_height: 128\n  demo_width: 160\n"
        "train:\n  epochs: 1\n  steps_per_epoch: 3\n  batch_size: 4\n  crop_size: 64\n"
        "registry:\n  uri: s3://stack-models/registry\n"  # endpoint: the Airflow connection
        "tracking:\n  backend: none\n"
    )
    env = airflow_env(tmp_path)
    env.update(
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__API_AUTH__JWT_SECRET="cellseg-test-secret",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="2",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        CELLSEG_CONFIG=str(cfg_file),
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
    subprocess.run(
        ["airflow", "db", "migrate"], env=env, check=True, capture_output=True, timeout=300
    )
    logs = [tmp_path / f"{name}.log" for name in ("api-server", "scheduler", "dag-processor")]
    procs = [
        _start(["airflow", "api-server", "--port", str(port), "--host", "127.0.0.1"], env, logs[0]),
        _start(["airflow", "scheduler"], env, logs[1]),
        _start(["airflow", "dag-processor"], env, logs[2]),
    ]
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(
            lambda: httpx.get(f"{base}/api/v2/version").status_code == 200,
            180,
            "the API server",
            logs,
        )
        token = httpx.get(f"{base}/auth/token").json()["access_token"]
        api = httpx.Client(
            base_url=f"{base}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        _wait(
            lambda: api.get("/dags/cell_segmentation").status_code == 200,
            180,
            "the DAG processor to parse the DAG",
            logs,
        )
        created = api.post(
            "/dags/cell_segmentation/dagRuns", json={"logical_date": None, "conf": {"epochs": 1}}
        )
        assert created.status_code == 200, created.text
        run_id = created.json()["dag_run_id"]

        def finished():
            state = api.get(f"/dags/cell_segmentation/dagRuns/{run_id}").json()["state"]
            return state if state in ("success", "failed") else None

        assert _wait(finished, 600, "the DAG run to finish", logs) == "success", "\n".join(
            p.read_text()[-3000:] for p in logs
        )
        tis = api.get(f"/dags/cell_segmentation/dagRuns/{run_id}/taskInstances").json()
        assert {t["task_id"]: t["state"] for t in tis["task_instances"]} == dict.fromkeys(
            STAGE_NAMES, "success"
        )
        xcom = api.get(
            f"/dags/cell_segmentation/dagRuns/{run_id}/taskInstances/register/"
            "xcomEntries/return_value"
        ).json()
        registered = xcom["value"] if isinstance(xcom["value"], dict) else json.loads(xcom["value"])
        assert registered["model_uri"] == "s3://stack-models/registry/cellseg-unet/v0001"
    finally:
        _stop(procs)
    s3 = boto3.client("s3", endpoint_url=s3_server)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="stack-models")["Contents"]}
    version = "registry/cellseg-unet/v0001"
    files = ("claim.json", "metadata.json", "card.json", "weights.safetensors", "MODEL_CARD.md")
    assert {f"{version}/{n}" for n in (*files, "manifest.json")} <= keys
    assert "registry/cellseg-unet/aliases/production/000001.json" in keys
    card = json.loads(
        s3.get_object(Bucket="stack-models", Key=f"{version}/metadata.json")["Body"].read()
    )
    assert {"unet", "otsu"} <= set(card["metrics"]["test"])
