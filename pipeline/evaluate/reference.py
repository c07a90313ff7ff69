"""What evaluation scores against and what it scores: ground-truth samples of a split, and
predicted label images read from folders.

Prediction files are (H, W) integer label images (0 = background) named after the field:
``<safe_id>``, ``<field_id>`` or ``<safe_id>_labels``, as TIF, PNG (8- or 16-bit, as Cellpose
writes its masks) or BMP; not JPEG, whose loss changes labels. A binary mask (one non-zero
value) is split into connected components.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.config import PipelineConfig
from pipeline.conventions import safe_name
from pipeline.errors import DataError
from pipeline.ingest.layouts import get_layout
from pipeline.ingest.manifest import is_version, load_manifest
from pipeline.io import IMAGE_SUFFIXES, LOSSY_SUFFIXES, binary_to_instances, read_image
from pipeline.preprocess.samples import (
    Sample,
    channel_indices,
    is_prepared,
    load_split,
    prepared_dataset_id,
    read_field,
)
from pipeline.rundir import RunDir

# label images are read from lossless files only
LABEL_SUFFIXES = tuple(s for s in IMAGE_SUFFIXES if s not in LOSSY_SUFFIXES)


def read_prediction(folder: Path, field_id: str, shape: tuple[int, ...]) -> np.ndarray:
    """The (H, W) int64 label image predicted for `field_id` in `folder` (see module docstring)."""
    stem = safe_name(field_id)
    names = [f"{n}{ext}" for n in (stem, field_id, f"{stem}_labels") for ext in LABEL_SUFFIXES]
    path = next((folder / n for n in names if (folder / n).is_file()), None)
    if path is None:
        raise DataError(f"{folder}: no prediction for field {field_id!r}; expected {names[0]}")
    arr = np.squeeze(read_image(path))
    if arr.ndim == 3 and arr.shape[:2] == shape:
        raise DataError(f"{path}: a colour image, not a label image (0 = background, 1..N)")
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
        read_field(root, row, idx, p.low_percentile, p.high_percentile, p.normalisation)
        for row in rows.itertuples()
    ]
    return samples, {
        "dataset_id": meta["dataset_id"],
        "split_strategy": meta.get("split_strategy", "?"),
    }


def load_reference(
    uri: str, cfg: PipelineConfig, split: str = "test", required: bool = True
) -> tuple[list[Sample], dict]:
    """Fields of `split` with ``data.target`` labels, and {dataset_id, split_strategy}.

    `uri` is a prepared folder, a run folder (its prepared folder) or a dataset version
    (images are normalised here as preprocess would). No such field: DataError where
    `required`, else an empty list.
    """
    root, target = Path(uri), cfg.data.target
    info = {"dataset_id": "unknown", "split_strategy": get_layout(cfg.data.layout).split}
    if is_prepared((run := RunDir(root)).preprocess):  # a run folder
        info["dataset_id"] = (run.read_state("preprocess") or {}).get("dataset_id", "unknown")
        root = run.preprocess
    if is_prepared(root):
        info["dataset_id"] = prepared_dataset_id(root, info["dataset_id"])
        samples = load_split(root, split)
    elif is_version(root):
        samples, info = _dataset_samples(root, cfg, split)
    else:
        raise DataError(
            f"{root}: neither a dataset version (dataset.json) nor a prepared folder "
            "(index.json); pass a dataset folder or a run folder"
        )
    samples = [s for s in samples if target in s.labels]
    if not samples and required:
        raise DataError(f"{uri}: no {split} fields with '{target}' labels to score")
    return samples, info


def prediction_folders(pred_dir: str | Path) -> dict[str, str]:
    """{method: folder}: `pred_dir` itself if it holds label images (`LABEL_SUFFIXES`), else
    each sub-folder holding some."""
    root = Path(pred_dir)
    if not root.is_dir():
        raise DataError(f"{root}: predictions folder does not exist")

    def holds(p: Path, suffixes: tuple[str, ...]) -> bool:
        return any(f.suffix.lower() in suffixes for f in p.iterdir())

    if holds(root, LABEL_SUFFIXES):
        return {root.name: str(root)}
    folders = [p for p in sorted(root.iterdir()) if p.is_dir()]
    found = {p.name: str(p) for p in folders if holds(p, LABEL_SUFFIXES)}
    if not found:
        lossy = any(holds(p, LOSSY_SUFFIXES) for p in (root, *folders))
        raise DataError(
            f"{root}: no label images (TIF, PNG, BMP) in it or in its sub-folders"
            + ("; JPEG changes labels: write them as TIF or PNG" if lossy else "")
        )
    return found
