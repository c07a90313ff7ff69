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
# Two workers, an idle one taking queued tests from the busy one: the slow tests wait on subprocesses
# (Airflow, PostgreSQL, S3), so on 2 cores the suite took 14.6 instead of 19.2 min. `-n 0`: one process.
python -m pytest -n 2 --dist worksteal --durations=15 "$@"
