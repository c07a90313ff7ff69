#!/usr/bin/env bash
# Airflow settings for running the project's DAGs locally (source after scripts/env.sh).
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CELLSEG_HOME="${CELLSEG_HOME:-$repo}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$CELLSEG_HOME/data/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$repo/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-2}"
export AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT=60
export AIRFLOW__LOGGING__LOGGING_LEVEL="${AIRFLOW__LOGGING__LOGGING_LEVEL:-INFO}"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$AIRFLOW_HOME"
