"""Run the real Airflow DAG from tests: a private AIRFLOW_HOME (SQLite) per test."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def airflow_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(home / "airflow"),
        CELLSEG_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__PARALLELISM="2",
        AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="60",
        PYTHONPATH=f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}",
        WANDB_SILENT="true",
    )
    return env


def dags_test(
    home: Path, conf: dict, timeout: int = 900, dag_id: str = "cell_segmentation"
) -> tuple[int, str, str]:
    """`airflow db migrate` then `airflow dags test <dag_id> -c conf`.

    Returns (exit code, combined log, run id).
    """
    env = airflow_env(home)
    subprocess.run(
        ["airflow", "db", "migrate"], env=env, check=True, capture_output=True, timeout=300
    )
    proc = subprocess.run(
        ["airflow", "dags", "test", dag_id, "-c", json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=home,
    )
    log = proc.stdout + proc.stderr
    match = re.findall(r"run_id=(manual__[^,\s]+)", log)
    return proc.returncode, log, match[-1] if match else ""


def task_states(home: Path, run_id: str) -> dict[str, str]:
    out = subprocess.run(
        ["airflow", "tasks", "states-for-dag-run", "cell_segmentation", run_id, "-o", "json"],
        env=airflow_env(home),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    rows = json.loads(out.stdout[out.stdout.index("[") :])
    return {r["task_id"]: r["state"] for r in rows}
