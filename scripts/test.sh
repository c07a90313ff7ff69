#!/usr/bin/env bash
# Set everything up and run the whole test suite (slow end-to-end tests included).
# Extra arguments go to pytest, e.g.: bash scripts/test.sh -m "not slow"
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
source scripts/env.sh
bash scripts/system_deps.sh
ruff check pipeline dags tests benchmarks
ruff check --select AIR3 dags
# Two workers: most slow tests wait on subprocesses (Airflow, PostgreSQL, S3) about half the time,
# so on 2 cores the suite takes about 40% less wall time. `-n 0` runs them in one process.
python -m pytest -n 2 --durations=15 "$@"
