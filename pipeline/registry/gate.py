"""The promotion gate: does a newly registered version replace ``production``?

Compared on ``registry.promote_metric`` of the network's own row (``unet``) on the same test
data: production's recorded score when it was scored on the same data (same `test_data` id),
else production re-scored now on this run's test fields. The candidate must beat it by more
than ``registry.promote_margin``. The first version of a model name becomes production.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.conventions import Record
from pipeline.errors import DataError
from pipeline.registry.aliases import PRODUCTION, current
from pipeline.registry.versions import Registry, version_name

log = logging.getLogger(__name__)
ROW = "unet"  # the network's own instances


@dataclass
class Decision(Record):
    promoted: bool
    reason: str
    metric: str
    candidate: float
    production: float | None = None  # production's score on the same test data
    production_version: int | None = None
    rescored: bool = False  # production was scored again on this run's test fields


def rescore(reg: Registry, version: int, prepared_uri: str, cfg: PipelineConfig, out: Path):
    """Production's network row on this run's test fields (predictions and metrics in `out`)."""
    from pipeline.evaluate.reference import load_reference
    from pipeline.evaluate.scoring import write_evaluation
    from pipeline.evaluate.stage import NETWORK_ROWS, predict_network

    samples, info = load_reference(prepared_uri, cfg, "test")
    with tempfile.TemporaryDirectory(prefix="cellseg-production-") as tmp:
        model = reg.fetch(version, tmp)
        rows = {ROW: NETWORK_ROWS[ROW]}
        predictions = predict_network(model, samples, out / "predictions", rows)
    meta = {**info, "run_id": f"re-score of {version_name(version)}"}
    return write_evaluation(samples, predictions, cfg, out / "evaluate", meta).summary[ROW]


def decide(
    reg: Registry, version: int, meta: dict, prepared_uri: str, cfg: PipelineConfig, out: Path
) -> Decision:
    """Whether `version` (its registry `meta`) should become production, and why."""
    metric, margin = cfg.registry.promote_metric, cfg.registry.promote_margin
    score = float(meta["metrics"]["test"][ROW][metric])
    prod = current(reg, PRODUCTION)
    if prod is not None and int(prod["version"]) == version:
        return Decision(True, f"{version_name(version)} is already production", metric, score)
    if prod is None:
        if not cfg.registry.auto_promote:
            off = "no production model yet; registry.auto_promote is off: "
            off += f"cellseg models promote {version}"
            return Decision(False, off, metric, score)
        return Decision(True, "first version: no production model yet", metric, score)
    pv = int(prod["version"])
    d = Decision(False, "", metric, score, production_version=pv)
    prod_meta = reg.metadata(pv)
    if prod_meta.get("test_data", {}).get("id") == meta["test_data"]["id"]:
        d.production = float(prod_meta["metrics"]["test"][ROW][metric])
    else:
        d.rescored = True
        try:
            d.production = float(rescore(reg, pv, prepared_uri, cfg, out)[metric])
        except (DataError, ValueError, RuntimeError) as exc:
            d.reason = (
                f"production {version_name(pv)} could not be re-scored on this run's test "
                f"data ({exc}); kept. Promote by hand if intended: cellseg models promote "
                f"{version}"
            )
            return d
    where = "re-scored on this run's test fields" if d.rescored else "same test data"
    versus = f"{metric} {score:.4f} vs production {version_name(pv)} {d.production:.4f} ({where})"
    if not cfg.registry.auto_promote:
        d.reason = f"{versus}; registry.auto_promote is off: cellseg models promote {version}"
    elif score > d.production + margin:
        d.promoted, d.reason = True, f"{versus}: better by more than the margin {margin}"
    else:
        d.reason = f"{versus}: not better by more than the margin {margin}; stays a candidate"
    return d
