"""A dataset version on disk: the only module that spells its layout.

``<data_dir>/datasets/<layout>-<id>/``::

    dataset.json                      id, layout, source, channels, overlap rule, skipped files
    manifest.csv                      one row per field (ids, paths, shapes, stats, counts, split)
    fields/<n>/image.tif              (C, H, W) raw intensities, uint8/uint16 (absent when C = 0)
    fields/<n>/cells.tif, nuclei.tif  (H, W) uint16 instance labels, 0 = background
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.conventions import LABEL_SETS
from pipeline.errors import DataError
from pipeline.ingest.layouts.base import Field
from pipeline.io import sha256_array, write_tif
from pipeline.jsonio import write_json

MANIFEST_VERSION = 2  # part of the dataset id: a new manifest format never reuses an old folder


def _field_dir(index: int) -> str:
    return f"fields/{index:04d}"


def _label_columns(key: str, lab: np.ndarray | None, f: Field, index: int) -> dict:
    """Per label set: path, object count, coverage, object areas (px), overlap statistics."""
    areas = np.bincount(lab.ravel())[1:] if lab is not None else np.zeros(0, np.int64)
    areas = areas[areas > 0]
    return {
        f"{key}_path": f"{_field_dir(index)}/{key}.tif" if lab is not None else "",
        f"n_{key}": int(areas.size),
        f"{key}_coverage": float((lab > 0).mean()) if lab is not None else 0.0,
        f"{key}_area_min": int(areas.min()) if areas.size else 0,
        f"{key}_area_median": float(np.median(areas)) if areas.size else 0.0,
        f"{key}_area_max": int(areas.max()) if areas.size else 0,
        f"{key}_overlap_px": int(f.stats.get(f"{key}_overlap_px", 0)),
        f"{key}_hidden": int(f.stats.get(f"{key}_hidden", 0)),
    }


def field_row(f: Field, index: int, split: str, channels: tuple[str, ...]) -> dict:
    """One manifest row. Fields without an image (C = 0) get an empty image_path and no stats."""
    c, h, w = f.image.shape
    row = {
        "field_id": f.field_id,
        "group": f.group,
        "split": split,
        "labelled": bool(f.labels),
        "image_path": f"{_field_dir(index)}/image.tif" if c else "",
        "height": h,
        "width": w,
        "n_channels": c,
        "dtype": str(f.image.dtype) if c else "",
        "content_hash": sha256_array(f.image, *(f.labels[k] for k in sorted(f.labels))),
        "sources": ";".join(f.sources),
    }
    for i, name in enumerate(channels[:c]):
        ch = f.image[i]
        row |= {
            f"{name}_min": int(ch.min()),
            f"{name}_max": int(ch.max()),
            f"{name}_mean": float(ch.mean()),
            f"{name}_std": float(ch.std()),
        }
    for key in LABEL_SETS:
        row |= _label_columns(key, f.labels.get(key), f, index)
    return row


def write_version(folder: Path, fields: list[Field], rows: list[dict], meta: dict) -> None:
    """Write a complete dataset version into `folder` (the caller publishes it atomically)."""
    for i, f in enumerate(fields):
        if f.image.shape[0]:
            write_tif(folder / _field_dir(i) / "image.tif", f.image)
        for key, lab in f.labels.items():
            write_tif(folder / _field_dir(i) / f"{key}.tif", lab)
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    write_json(folder / "dataset.json", meta)


def is_version(folder: str | Path) -> bool:
    return (Path(folder) / "dataset.json").is_file()


def load_manifest(dataset_uri: str | Path) -> tuple[pd.DataFrame, dict]:
    """Read a dataset version's manifest table and metadata."""
    root = Path(dataset_uri)
    if not is_version(root):
        raise DataError(
            f"{root}: not a dataset version (no dataset.json); run `cellseg ingest` first"
        )
    try:
        meta = json.loads((root / "dataset.json").read_text())
        manifest = pd.read_csv(root / "manifest.csv", keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{root}: unreadable dataset version ({type(exc).__name__}: {exc}); delete the "
            "folder and re-run `cellseg ingest`"
        ) from exc
    return manifest, meta


def is_labels_only(manifest: pd.DataFrame) -> bool:
    """True when no field has an image (ground truth alone, e.g. the BBBC020 nuclei archive):
    such a dataset can score predictions but cannot train."""
    return not manifest["image_path"].astype(str).str.len().gt(0).any()
