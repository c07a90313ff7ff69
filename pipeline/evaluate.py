"""Evaluate stage: score every method and model on the test split, write metrics and a report.

Outputs in ``<run_dir>/evaluate/``: ``metrics_per_image.csv`` (one row per method x field),
``metrics_summary.json`` (mean per method, plus the border policy and dataset id),
``overlays/*.png`` and a self-contained ``report.html``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import PipelineConfig
from pipeline.io import DataError, atomic_path, read_tif, write_json, write_tif
from pipeline.metrics import score_image
from pipeline.preprocess import load_split, safe_name
from pipeline.report import write_report

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    metrics_csv: str
    summary_json: str
    report_html: str
    summary: dict[str, dict[str, float]]  # method -> metric -> mean over test fields

    def to_dict(self) -> dict:
        return asdict(self)


def predict_unet(checkpoint: str, prepared_uri: str, run_dir: str) -> str:
    """Run the trained U-Net on the test split; returns the predictions folder."""
    from pipeline.predict import load_model, predict_labels

    model, ckpt = load_model(checkpoint)
    device = next(model.parameters()).device
    folder = Path(run_dir) / "predictions" / "unet"
    with atomic_path(folder) as tmp:
        for s in load_split(prepared_uri, "test"):
            labels = predict_labels(model, s.image, device, ckpt["threshold"])
            write_tif(tmp / f"{safe_name(s.field_id)}.tif", labels.astype(np.uint16))
    return str(folder)


def score_predictions(prepared_uri: str, predictions: dict[str, str], target: str,
                      border_margin: int) -> pd.DataFrame:
    """One row per (method, test field) with every metric of `score_image`."""
    samples = [s for s in load_split(prepared_uri, "test") if target in s.labels]
    if not samples:
        raise DataError(f"{prepared_uri}: no test fields with '{target}' labels to score")
    rows = []
    for method, folder in predictions.items():
        for s in samples:
            path = Path(folder) / f"{safe_name(s.field_id)}.tif"
            pred = read_tif(path)
            gt = s.labels[target]
            if pred.shape != gt.shape:
                raise DataError(f"{path}: prediction shape {pred.shape} != label shape {gt.shape}")
            rows.append({"method": method, "field_id": s.field_id,
                         **score_image(pred, gt, border_margin)})
    return pd.DataFrame(rows)


def evaluate(prepared_uri: str, predictions: dict[str, str], cfg: PipelineConfig, run_dir: str,
             checkpoint: str | None = None, context: dict | None = None) -> EvalResult:
    """Score baselines (`predictions`: method -> folder) and, if given, the U-Net checkpoint."""
    predictions = dict(predictions)
    if checkpoint:
        predictions["unet"] = predict_unet(checkpoint, prepared_uri, run_dir)
    if not predictions:
        raise ValueError("nothing to evaluate: no baseline predictions and no checkpoint")
    margin = cfg.evaluate.border_margin
    table = score_predictions(prepared_uri, predictions, cfg.data.target, margin)
    metric_cols = [c for c in table.columns if c not in ("method", "field_id")]
    summary = {m: {k: float(v) for k, v in g[metric_cols].mean().items()}
               for m, g in table.groupby("method", sort=False)}
    out = Path(run_dir) / "evaluate"
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "metrics_per_image.csv") as tmp:
        table.to_csv(tmp, index=False)
    meta = {"border_policy": f"crop {margin} px from each edge" if margin else "no border crop",
            "target": cfg.data.target, "n_test_fields": int(table["field_id"].nunique()),
            **(context or {})}
    write_json(out / "metrics_summary.json", {"methods": summary, **meta})
    report = write_report(out, table, summary, predictions, prepared_uri, cfg, meta)
    for method, values in summary.items():
        log.info("%-18s fg IoU %.4f  Dice %.4f", method, values["fg_iou"], values["fg_dice"])
    return EvalResult(str(out / "metrics_per_image.csv"), str(out / "metrics_summary.json"),
                      str(report), summary)
