#!/usr/bin/env bash
# Set everything up and run the whole pipeline on the built-in demo dataset through the real
# Airflow DAG (`airflow dags test`), then print where the report and the registered model are.
# Extra arguments are passed as DAG conf JSON, e.g.: bash scripts/demo.sh '{"epochs": 10}'
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
source scripts/env.sh
source scripts/airflow_env.sh
conf="${1:-}"; [ -n "$conf" ] || conf="{}"
start=$(date +%s)
echo "[demo] preparing the Airflow database in $AIRFLOW_HOME" >&2
airflow db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 \
    || { tail -20 "$AIRFLOW_HOME/db-migrate.log"; exit 1; }
log="$AIRFLOW_HOME/last-dag-test.log"
echo "[demo] running DAG cell_segmentation (log: $log)" >&2
if ! airflow dags test cell_segmentation -c "$conf" >"$log" 2>&1; then
    grep -E "ERROR|Error|error" "$log" | tail -20 >&2
    echo "[demo] the DAG run failed; full log: $log" >&2
    exit 1
fi
grep -q "state=success" "$log" || { echo "[demo] DAG run did not succeed; see $log" >&2; exit 1; }
run_id=$(grep -oE "run_id=manual__[^,]+" "$log" | tail -1 | cut -d= -f2)
python - "$run_id" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
from pipeline.config.params import config_from_params
from pipeline.rundir import RunDir
run_id, seconds = sys.argv[1], sys.argv[2]
run = RunDir.create(config_from_params({}).paths.runs_dir, run_id)
reg = json.load(open(run.registered))
summary = json.load(open(reg["metrics"]))["methods"]
print(f"\nDAG run {run_id} succeeded in {seconds}s")
print(f"  {'method':<18} {'fg IoU':>7} {'Dice':>7} {'F1@0.5':>7} {'AJI':>7}")
for method, m in summary.items():
    print(f"  {method:<18} {m['fg_iou']:7.3f} {m['fg_dice']:7.3f} {m['f1']:7.3f} {m['aji']:7.3f}")
print(f"Report:           {reg['report']}")
print(f"Metrics:          {reg['metrics']}")
print(f"Registered model: {reg['model_uri']} (version {reg['version']}, aliases: {', '.join(reg['aliases']) or 'none'})")
print(f"Registry gate:    {reg['decision']['reason']}")
PY
