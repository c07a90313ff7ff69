"""Scoring and writing an evaluation: every method on every field, then the outputs.

Outputs in the evaluation folder:

- ``metrics_per_image.csv``: one row per method x field, every metric of
  `pipeline.evaluate.metrics.score_image` (definitions in that module);
- ``metrics_summary.json``: ``methods`` (method -> metric -> mean over fields), the AP curve,
  the border policy, the split, the dataset id and the run context;
- ``overlays/<method>/<field>.png``: ground-truth (green) and predicted (magenta) contours on
  the image, one per method and field;
- ``figures/``: side-by-side comparisons of all methods on the first ``report_overlays``
  fields, per-image metric plots and the AP curve;
- ``report.html``: one self-contained page (images embedded) with all of the above.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from pipeline.atomic import atomic_path
from pipeline.config import PipelineConfig
from pipeline.conventions import Record, safe_name
from pipeline.errors import ConfigError
from pipeline.evaluate.metrics import (
    IOU_THRESHOLDS,
    SUMMARY_METRICS,
    describe_border_policy,
    score_image,
)
from pipeline.evaluate.plots import (
    ap_curve_figure,
    comparison_figure,
    overlay_rgb,
    per_image_figure,
    png_bytes,
)
from pipeline.evaluate.reference import read_prediction
from pipeline.evaluate.report import write_report
from pipeline.ingest.layouts import get_layout, method_channel
from pipeline.ingest.splits import SPLIT_RULES
from pipeline.jsonio import write_json
from pipeline.preprocess.samples import Sample

log = logging.getLogger(__name__)


@dataclass
class EvalResult(Record):
    metrics_csv: str
    summary_json: str
    report_html: str
    summary: dict[str, dict[str, float]]  # method -> metric -> mean over test fields
    test_data: dict[str, str]  # id: what was scored and how (equal ids: comparable scores)


def describe_test_data(meta: dict) -> dict[str, str]:
    """{id, text}: an id of the scored data and rules (dataset, target, fields, border policy),
    so two evaluations are compared only when they scored the same thing the same way."""
    keys = ("dataset_id", "target", "test_fields", "border_policy", "border_margin")
    ident = hashlib.sha256(json.dumps([meta.get(k) for k in keys]).encode()).hexdigest()[:16]
    text = (
        f"{meta['n_test_fields']} {meta.get('split', 'test')} fields of dataset "
        f"{meta.get('dataset_id', 'unknown')}, {meta['border_policy_text']}"
    )
    return {"id": ident, "text": text}


def _display_channel(cfg: PipelineConfig, n_channels: int) -> int:
    """The channel the pictures show: the one single-channel methods read (else the first)."""
    d = cfg.data
    channels = list(d.channels or get_layout(d.layout).channels)
    try:
        i = channels.index(method_channel(d.layout, d.target, cfg.baseline.channel, channels))
    except ConfigError:
        i = 0
    return i if i < n_channels else 0


def score_fields(
    samples: list[Sample], predictions: dict[str, str], cfg: PipelineConfig, out: Path
) -> tuple[pd.DataFrame, list[tuple[str, bytes]]]:
    """Score every method on every field; write ``out/overlays`` and the comparison figures.

    Returns the per-image table and (field_id, PNG) of the side-by-side comparisons.
    """
    e, target = cfg.evaluate, cfg.data.target
    display = _display_channel(cfg, max(1, samples[0].image.shape[0]))
    rows, figures = [], []
    with atomic_path(out / "overlays") as tmp:
        for i, s in enumerate(samples):
            gt = s.labels[target]
            preds = {
                m: read_prediction(Path(f), s.field_id, gt.shape) for m, f in predictions.items()
            }
            scores = {
                m: score_image(p, gt, e.border_margin, e.border_policy) for m, p in preds.items()
            }
            rows += [{"method": m, "field_id": s.field_id, **v} for m, v in scores.items()]
            # ground truth without its image (labels-only dataset): draw contours on black
            image = s.image[display] if len(s.image) else np.zeros(gt.shape, np.float32)
            overlays = {m: overlay_rgb(image, gt, pred) for m, pred in preds.items()}
            for m, rgb in overlays.items():
                (tmp / m).mkdir(parents=True, exist_ok=True)
                png = cv2.imencode(".png", rgb[..., ::-1])[1]  # RGB -> OpenCV's BGR
                (tmp / m / f"{safe_name(s.field_id)}.png").write_bytes(png.tobytes())
            if i < e.report_overlays:
                fig = comparison_figure(image, gt, overlays, scores, s.field_id)
                figures.append((s.field_id, png_bytes(fig)))
    table = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(predictions)}
    return table.sort_values("method", key=lambda c: c.map(order), kind="stable"), figures


def summarise(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """method -> metric -> mean over the fields in `table` (SUMMARY_METRICS)."""
    return {
        str(m): {k: float(v) for k, v in g[list(SUMMARY_METRICS)].mean().items()}
        for m, g in table.groupby("method", sort=False)
    }


def write_evaluation(
    samples: list[Sample], predictions: dict[str, str], cfg: PipelineConfig, out: Path, meta: dict
) -> EvalResult:
    """Score, then write the CSV, the summary JSON, the figures and the report into `out`."""
    if not predictions:
        raise ValueError("nothing to evaluate: no baseline predictions and no model")
    out.mkdir(parents=True, exist_ok=True)
    table, comparisons = score_fields(samples, predictions, cfg, out)
    summary = summarise(table)
    with atomic_path(out / "metrics_per_image.csv") as tmp:
        table.to_csv(tmp, index=False)
    ids, split = [s.field_id for s in samples], meta.get("split", "test")
    rule = SPLIT_RULES.get(meta["split_strategy"], meta["split_strategy"])
    e = cfg.evaluate
    meta = {
        **meta,
        "target": cfg.data.target,
        "border_policy": e.border_policy,
        "border_margin": e.border_margin,
        "border_policy_text": describe_border_policy(e.border_policy, e.border_margin),
        "n_test_fields": len(samples),
        "test_fields": ids,
        "split_text": f"split by field at ingest ({meta['split_strategy']}: {rule}); "
        f"scored: the {len(ids)} {split} fields {', '.join(ids)}",
        "matching": "one-to-one optimal assignment, TP at IoU >= t; metric definitions in "
        "pipeline/evaluate/metrics.py",
        "aggregation": "mean over test fields",
    }
    ap_cols = [f"ap_{round(t * 100)}" for t in IOU_THRESHOLDS]
    ap_curve = {str(m): g[ap_cols].mean().to_dict() for m, g in table.groupby("method", sort=False)}
    meta["test_data"] = describe_test_data(meta)
    write_json(out / "metrics_summary.json", {"methods": summary, "ap_curve": ap_curve, **meta})
    figures = {
        "per_image": png_bytes(per_image_figure(table)),
        "ap_curve": png_bytes(ap_curve_figure(table)),
    }
    figures |= {f"compare_{safe_name(fid)}": png for fid, png in comparisons}
    with atomic_path(out / "figures") as tmp:
        tmp.mkdir()
        for name, png in figures.items():
            (tmp / f"{name}.png").write_bytes(png)
    report = write_report(out, summary, figures, comparisons, list(predictions), cfg, meta)
    for method, v in summary.items():
        log.info(
            "%-18s fg IoU %.4f  F1@0.5 %.4f  mAP %.4f  AJI %.4f",
            method,
            v["fg_iou"],
            v["f1"],
            v["map"],
            v["aji"],
        )
    return EvalResult(
        str(out / "metrics_per_image.csv"),
        str(out / "metrics_summary.json"),
        str(report),
        summary,
        meta["test_data"],
    )
