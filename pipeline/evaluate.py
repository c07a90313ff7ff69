"""Evaluate stage: score every method and model on the test split, write metrics and a report.

Outputs in ``<run_dir>/evaluate/`` (or `out_dir` for `evaluate_folder`):

- ``metrics_per_image.csv``: one row per method x test field, every metric of
  `pipeline.metrics.score_image` (definitions in that module);
- ``metrics_summary.json``: ``methods`` (method -> metric -> mean over test fields), the AP curve,
  the border policy, the split, the dataset id and the run context;
- ``overlays/<method>/<field>.png``: ground-truth (green) and predicted (magenta) contours on
  the image, one per method and test field;
- ``figures/``: side-by-side comparisons of all methods on the first ``report_overlays`` test
  fields, per-image metric plots and the AP curve;
- ``report.html``: one self-contained page (images embedded) with all of the above.

Prediction files are (H, W) integer label images (0 = background) named after the field:
``<safe_id>.tif``, ``<field_id>.tif`` or ``<safe_id>_labels.tif``. A binary mask (one non-zero
value) is split into connected components.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from pipeline.config import PipelineConfig
from pipeline.ingest import load_manifest
from pipeline.io import (
    DataError,
    atomic_path,
    binary_to_instances,
    read_tif,
    write_json,
    write_labels,
)
from pipeline.layouts import get_layout
from pipeline.metrics import IOU_THRESHOLDS, SUMMARY_METRICS, describe_border_policy, score_image
from pipeline.plots import (
    ap_curve_figure,
    comparison_figure,
    overlay_rgb,
    per_image_figure,
    png_bytes,
)
from pipeline.preprocess import Sample, channel_indices, load_split, read_field, safe_name
from pipeline.report import write_report
from pipeline.tracking import track

log = logging.getLogger(__name__)

SPLIT_RULES = {
    "stratified": "fields of each condition shuffled (seeded by field id) and interleaved",
    "contiguous": "blocks of consecutive frames per sequence; the last block is the test split",
}


@dataclass
class EvalResult:
    metrics_csv: str
    summary_json: str
    report_html: str
    summary: dict[str, dict[str, float]]  # method -> metric -> mean over test fields

    def to_dict(self) -> dict:
        return asdict(self)


def predict_unet(checkpoint: str, samples: list[Sample], run_dir: str) -> dict[str, str]:
    """Run the trained U-Net on the test split, scored two ways so the model is not credited
    with the post-processing: ``unet`` (connected components of its foreground, the model
    alone) and ``unet_watershed`` (the same foreground split with the baseline's markers).
    `samples`: the test fields (normalised images). Returns {method: predictions folder}."""
    from pipeline.predict import foreground_mask, load_model, to_instances

    model, ckpt = load_model(checkpoint)
    device = next(model.parameters()).device
    methods = {"unet": "components", "unet_watershed": "watershed"}
    folders = {name: Path(run_dir) / "predictions" / name for name in methods}
    with atomic_path(folders["unet"]) as pure, atomic_path(folders["unet_watershed"]) as split:
        out = {"unet": pure, "unet_watershed": split}
        for s in samples:
            fg = foreground_mask(model, s.image, device, ckpt)
            for name, how in methods.items():
                labels = to_instances(fg, s.image, ckpt, how)
                write_labels(out[name] / f"{safe_name(s.field_id)}.tif", labels)
    return {name: str(folder) for name, folder in folders.items()}


def read_prediction(folder: Path, field_id: str, shape: tuple[int, ...]) -> np.ndarray:
    """The (H, W) int64 label image predicted for `field_id` in `folder` (see module docstring)."""
    stem = safe_name(field_id)
    names = [f"{n}{ext}" for n in (stem, field_id, f"{stem}_labels") for ext in (".tif", ".tiff")]
    path = next((folder / n for n in names if (folder / n).is_file()), None)
    if path is None:
        raise DataError(f"{folder}: no prediction for field {field_id!r}; expected {names[0]}")
    arr = np.squeeze(read_tif(path))
    if arr.shape != shape:
        raise DataError(f"{path}: prediction shape {arr.shape} != ground-truth shape {shape}")
    if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
        raise DataError(f"{path}: float values that are not integer labels (dtype {arr.dtype})")
    if arr.min() < 0:
        raise DataError(f"{path}: negative labels (min {arr.min()}); 0 must be background")
    return binary_to_instances(arr)  # a binary mask is split into its components


def _dataset_samples(root: Path, cfg: PipelineConfig, split: str) -> tuple[list[Sample], dict]:
    """`split` fields with target labels read from a dataset version, normalised as preprocess."""
    manifest, meta = load_manifest(root)
    if meta["layout"] != cfg.data.layout:
        raise DataError(
            f"{root} holds a {meta['layout']!r} dataset but data.layout is "
            f"{cfg.data.layout!r}; set data.layout={meta['layout']}"
        )
    idx, target, p = channel_indices(meta, cfg.data.channels), cfg.data.target, cfg.preprocess
    rows = manifest[(manifest["split"] == split) & (manifest[f"{target}_path"] != "")]
    samples = [
        read_field(root, row, idx, p.low_percentile, p.high_percentile) for row in rows.itertuples()
    ]
    return samples, {
        "dataset_id": meta["dataset_id"],
        "split_strategy": meta.get("split_strategy", "?"),
    }


def load_reference(uri: str, cfg: PipelineConfig, split: str = "test") -> tuple[list[Sample], dict]:
    """Fields of `split` with ``data.target`` labels, and {dataset_id, split_strategy}.

    `uri` is a prepared folder (``index.json``), a run folder (``preprocess/index.json``) or a
    dataset version (``dataset.json``; images are normalised here as preprocess would).
    """
    root, target = Path(uri), cfg.data.target
    info = {"dataset_id": "unknown", "split_strategy": get_layout(cfg.data.layout).split}
    if (root / "preprocess" / "index.json").is_file():
        state = root / "state" / "preprocess.json"
        if state.is_file():
            info["dataset_id"] = json.loads(state.read_text()).get("dataset_id", "unknown")
        root = root / "preprocess"
    if (root / "index.json").is_file():
        samples = load_split(str(root), split)
    elif (root / "dataset.json").is_file():
        samples, info = _dataset_samples(root, cfg, split)
    else:
        raise DataError(
            f"{root}: neither a dataset version (dataset.json) nor a prepared folder "
            "(index.json); pass a dataset folder or a run folder"
        )
    samples = [s for s in samples if target in s.labels]
    if not samples:
        raise DataError(f"{uri}: no {split} fields with '{target}' labels to score")
    return samples, info


def _display_channel(cfg: PipelineConfig, n_channels: int) -> int:
    layout = get_layout(cfg.data.layout)
    name = cfg.baseline.channel or layout.target_channel.get(cfg.data.target, "")
    channels = list(cfg.data.channels or layout.channels)
    i = channels.index(name) if name in channels else 0
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
                png = cv2.imencode(".png", rgb[..., ::-1])[1]
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


def _finish(
    samples: list[Sample], predictions: dict[str, str], cfg: PipelineConfig, out: Path, meta: dict
) -> EvalResult:
    """Score, then write the CSV, the summary JSON, the figures and the report into `out`."""
    if not predictions:
        raise ValueError("nothing to evaluate: no baseline predictions and no checkpoint")
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
        "pipeline/metrics.py",
        "aggregation": "mean over test fields",
    }
    ap_cols = [f"ap_{round(t * 100)}" for t in IOU_THRESHOLDS]
    ap_curve = {str(m): g[ap_cols].mean().to_dict() for m, g in table.groupby("method", sort=False)}
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
        str(out / "metrics_per_image.csv"), str(out / "metrics_summary.json"), str(report), summary
    )


def evaluate(
    prepared_uri: str,
    predictions: dict[str, str],
    cfg: PipelineConfig,
    run_dir: str,
    checkpoint: str | None = None,
    context: dict | None = None,
) -> EvalResult:
    """Score baselines (`predictions`: method -> folder) and, if given, the U-Net checkpoint.

    `context` (dataset_id, run_id, validation summary, ...) is copied into the summary and report.
    """
    predictions = dict(predictions)
    samples, info = load_reference(prepared_uri, cfg, "test")
    if checkpoint:
        predictions |= predict_unet(checkpoint, samples, run_dir)
    meta = {**info, **(context or {})}
    result = _finish(samples, predictions, cfg, Path(run_dir) / "evaluate", meta)
    with track(cfg, run_dir, name=f"evaluate-{Path(run_dir).name}", job_type="evaluate") as t:
        t.summary({f"test/{m}/{k}": v for m, row in result.summary.items() for k, v in row.items()})
    return result


def prediction_folders(pred_dir: str | Path) -> dict[str, str]:
    """{method: folder}: `pred_dir` itself if it holds TIFs, else each sub-folder holding TIFs."""
    root = Path(pred_dir)
    if not root.is_dir():
        raise DataError(f"{root}: predictions folder does not exist")

    def has_tifs(p: Path) -> bool:
        return any(p.glob("*.tif")) or any(p.glob("*.tiff"))

    if has_tifs(root):
        return {root.name: str(root)}
    found = {p.name: str(p) for p in sorted(root.iterdir()) if p.is_dir() and has_tifs(p)}
    if not found:
        raise DataError(f"{root}: no .tif label images in it or in its sub-folders")
    return found


def evaluate_folder(
    pred_dir: str,
    dataset_uri: str,
    cfg: PipelineConfig,
    out_dir: str,
    split: str = "test",
    context: dict | None = None,
) -> EvalResult:
    """Score a folder of predicted label images against a dataset; outputs as `evaluate`.

    `pred_dir` holds ``<field>.tif`` label images (one method, named after the folder) or one
    sub-folder of them per method (e.g. a run's ``predictions/``). `dataset_uri` is a dataset
    version, a prepared folder or a run folder; every `split` field with ``data.target`` labels
    must have a prediction.
    """
    predictions = prediction_folders(pred_dir)
    samples, info = load_reference(dataset_uri, cfg, split)
    meta = {**info, "predictions": str(pred_dir), "split": split, **(context or {})}
    return _finish(samples, predictions, cfg, Path(out_dir), meta)
