"""The DAG file: parses fast, imports no heavy library, has the expected task graph."""

import json
import subprocess
import sys
from pathlib import Path

DAG_FILE = Path(__file__).parents[1] / "dags" / "cell_segmentation.py"
HEAVY = [
    "torch",
    "torchvision",
    "segmentation_models_pytorch",
    "cv2",
    "great_expectations",
    "skimage",
    "wandb",
    "pipeline.train",
]


def test_dag_file_imports_no_heavy_libraries():
    code = (
        "import importlib.util, json, sys, time\n"
        f"spec = importlib.util.spec_from_file_location('dag', {str(DAG_FILE)!r})\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "t = time.perf_counter(); spec.loader.exec_module(mod); dt = time.perf_counter() - t\n"
        f"print(json.dumps({{'heavy': [m for m in {HEAVY!r} if m in sys.modules], 'dt': dt}}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["dt"] < 5.0, f"DAG file took {result['dt']:.1f}s to import"


def test_task_graph_and_params():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    dag = bag.dags["cell_segmentation"]
    edges = {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids}
    assert edges == {
        ("ingest", "validate"),
        ("ingest", "preprocess"),
        ("validate", "preprocess"),
        ("validate", "evaluate"),
        ("preprocess", "baseline"),
        ("preprocess", "train"),
        ("preprocess", "evaluate"),
        ("baseline", "evaluate"),
        ("train", "evaluate"),
        ("train", "register"),
        ("evaluate", "register"),
    }
    assert all(t.retries >= 1 for t in dag.tasks)
    assert {"source", "target", "epochs", "encoder", "registry_uri", "overrides"} <= set(dag.params)
    assert dag.doc_md and "ingest" in dag.doc_md
