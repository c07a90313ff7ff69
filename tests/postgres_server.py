"""A real PostgreSQL server (the distribution's packages: initdb, pg_ctl) on 127.0.0.1 for the
Airflow metadata database, in a private temporary cluster; run as the `postgres` user when the
tests run as root (initdb refuses root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import free_port


def _bin(name: str) -> str:
    found = shutil.which(name) or next(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), None)
    if not found:
        pytest.fail(f"PostgreSQL's {name} is missing: apt-get install postgresql")
    return str(found)


class Postgres:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="cellseg-pg-"))
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.url = f"postgresql+psycopg2://airflow@127.0.0.1:{self.port}/airflow"

    def _run(self, *cmd: str) -> None:
        proc = subprocess.run([*self.as_user, *cmd], capture_output=True, text=True, timeout=120)
        if proc.returncode:
            pytest.fail(f"{' '.join(cmd)} failed: {proc.stdout[-1500:]} {proc.stderr[-1500:]}")

    def start(self) -> str:
        data = self.root / "data"
        self._run(_bin("initdb"), "-D", str(data), "-U", "airflow", "--auth=trust", "-E", "UTF8")
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(
            _bin("pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(self.root / "pg.log"),
            "-w",
            "-o",
            opts,
            "start",
        )
        self._run(
            _bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "airflow", "airflow"
        )
        return self.url

    def stop(self) -> None:
        subprocess.run(
            [*self.as_user, _bin("pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.root, ignore_errors=True)
