"""The register stage on real tiny runs: versions, staging/production aliases, the gate
re-scoring production on another run's test fields, idempotent retries, identity checks."""

from __future__ import annotations

import html
import json

import pytest
import torch

from pipeline.config import RegistryConfig
from pipeline.errors import DataError
from pipeline.registry.aliases import history
from pipeline.registry.stage import check_registrable
from pipeline.registry.versions import Registry
from pipeline.segment.artifact import load_model, save_model
from pipeline.stages import STAGE_NAMES, run_stage
from tests.conftest import TINY, make_cfg


def _run(tmp_path, demo_root, run_id: str, seed: int) -> dict:
    overrides = {
        **TINY,
        "paths.data_dir": str(tmp_path / "data"),
        "paths.runs_dir": str(tmp_path / "runs"),
        "registry.uri": str(tmp_path / "registry"),
        "data.source": str(demo_root),
        "data.split_seed": seed,
    }
    params, outputs = {"overrides": overrides}, {}
    for name in STAGE_NAMES:
        outputs[name] = run_stage(name, params, run_id, outputs)
    return outputs


@pytest.mark.slow
def test_register_promotes_the_first_and_gates_the_next_on_rescored_production(tmp_path, demo_root):
    first = _run(tmp_path, demo_root, "r1", seed=0)["register"]
    assert (first["version"], first["aliases"]) == (1, ["staging", "production"])
    assert first["decision"]["reason"] == "first version: no production model yet"
    report = (tmp_path / "runs/r1/evaluate/report.html").read_text()
    assert 'id="registry"' in report and "first version: no production model yet" in report

    second = _run(tmp_path, demo_root, "r2", seed=1)
    out, d = second["register"], second["register"]["decision"]

    def summary(run: str, what: str = "evaluate") -> dict:
        return json.loads((tmp_path / "runs" / run / what / "metrics_summary.json").read_text())

    assert summary("r2")["test_data"]["id"] != summary("r1")["test_data"]["id"]
    # production (v1) was re-scored on r2's test fields, not compared on its own old ones
    rescored = summary("r2", "register/evaluate")
    assert rescored["test_fields"] == summary("r2")["test_fields"]
    assert d["rescored"] and d["production_version"] == 1
    assert d["production"] == pytest.approx(rescored["methods"]["unet"]["f1"])
    assert out["version"] == 2 and "staging" in out["aliases"]
    assert ("production" in out["aliases"]) == d["promoted"]
    assert (d["candidate"] > d["production"]) == d["promoted"]
    reg = Registry(make_cfg(tmp_path).registry)
    trail = [e["version"] for e in history(reg, "production")]
    assert trail == ([1, 2] if d["promoted"] else [1])
    assert html.escape(d["reason"]) in (tmp_path / "runs/r2/evaluate/report.html").read_text()
    meta = reg.metadata(2)
    assert meta["run_id"] == "r2" and meta["code_version"] and meta["libraries"]["torch"]
    assert meta["test_data"] == second["evaluate"]["test_data"]

    # a retried register task reuses its version instead of registering the model twice
    paths = {"registry.uri": str(tmp_path / "registry"), "paths.runs_dir": str(tmp_path / "runs")}
    again = run_stage("register", {"overrides": paths}, "r2")
    assert again["version"] == 2 and reg.versions() == [1, 2]


def test_only_the_evaluated_finite_model_above_the_floor_is_registered(tmp_path, model_dir):
    cfg = RegistryConfig(uri=str(tmp_path / "reg"), min_f1=0.5)
    good = {"unet": {"f1": 0.9}}
    with pytest.raises(DataError, match="not the ones evaluated"):
        check_registrable(model_dir, "0" * 64, good, cfg)
    with pytest.raises(DataError, match=r"F1 of the network's own instances 0\.300 is below"):
        check_registrable(model_dir, None, {"unet": {"f1": 0.3}}, cfg)
    model, card = load_model(model_dir, torch.device("cpu"))
    with torch.no_grad():
        next(iter(model.parameters())).fill_(float("nan"))
    save_model(model, card, tmp_path / "nan-model")
    with pytest.raises(DataError, match="non-finite weights"):
        check_registrable(tmp_path / "nan-model", None, good, cfg)
    assert len(check_registrable(model_dir, None, good, cfg)) == 64
