"""The run folder's locks, across processes: one owner per run id; the parallel tasks of one
orchestrated run share it; one stage never runs twice at once."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.rundir import RunDir, RunInUse
from pipeline.stages import run_stage
from tests.conftest import REPO

HOLDER = """
import sys, time
from pipeline.rundir import RunDir
with RunDir.create(sys.argv[1], "r1").lock(sys.argv[2], shared=sys.argv[3] == "shared"):
    print("locked", flush=True)
    time.sleep(60)
"""


def _hold(tmp_path, stage: str, mode: str) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "runs"), stage, mode],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_process_on_a_run_id_is_refused_naming_the_holder(tmp_path):
    holder = _hold(tmp_path, "train", "exclusive")
    try:
        params = {"overrides": {"paths.runs_dir": str(tmp_path / "runs")}}
        with pytest.raises(RunInUse, match=rf"run r1 .* is in use by .*pid {holder.pid}.*train"):
            run_stage("ingest", params, "r1")
        assert not (tmp_path / "runs/r1/state").exists()  # the refused stage did nothing
    finally:
        holder.kill()
        holder.wait()
    run = RunDir.create(tmp_path / "runs", "r1")
    with run.lock("evaluate"), run.lock("evaluate"):  # free once the holder died; re-entrant
        assert "evaluate" in run.lock_file.read_text()
    assert run.lock_file.read_text() == ""


def test_tasks_of_one_orchestrated_run_share_it_but_never_run_one_stage_twice(tmp_path):
    holder = _hold(tmp_path, "baseline", "shared")  # e.g. Airflow's baseline task
    run = RunDir.create(tmp_path / "runs", "r1")
    try:
        with run.lock("train", shared=True):  # the parallel train task of the same DAG run
            pass
        with pytest.raises(RunInUse, match="other processes"):
            with run.lock("train"):  # a CLI process on the same run id
                pass
        with pytest.raises(RunInUse, match=rf"pid {holder.pid}.*baseline"):
            with run.lock("baseline", shared=True):  # the same stage twice at once
                pass
    finally:
        holder.kill()
        holder.wait()
