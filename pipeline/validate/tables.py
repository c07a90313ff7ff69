"""Tables the data-check suite runs on, computed from one dataset version (each file read once).

- ``manifest``: manifest.csv plus ``has_target`` (field carries target labels),
  ``target_mask_listed`` (labelled fields: is a target mask listed; else null),
  ``image_listed`` / ``declared_dtype`` (the field has an image, and its declared dtype) and
  ``field_splits`` (the distinct splits a field id appears in, joined with ``+``).
- ``fields``: per field (a repeated manifest row once), what its files hold: readability,
  shape / dtype / value-range / hash agreement with the manifest, per-channel std / range /
  saturated fraction, label-image readability, shape and dtype, target object count and
  coverage. Checks a file cannot answer (e.g. the shape of an unreadable file) are null, so
  only the root cause fails.
- ``objects``: one row per object of each target label image: pixel area and area fraction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.conventions import LABEL_SETS
from pipeline.errors import DataError
from pipeline.io import read_tif, sha256_array

log = logging.getLogger(__name__)


@dataclass
class Tables:
    manifest: pd.DataFrame
    fields: pd.DataFrame
    objects: pd.DataFrame

    def as_dict(self) -> dict[str, pd.DataFrame]:
        return {"manifest": self.manifest, "fields": self.fields, "objects": self.objects}


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def _int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def manifest_table(manifest: pd.DataFrame, target: str) -> pd.DataFrame:
    """The manifest with the derived columns the manifest checks read."""
    m = manifest.copy()
    for col in ("field_id", "split", "labelled", "image_path", "dtype", f"{target}_path"):
        if col not in m.columns:
            m[col] = ""
    labelled = m["labelled"].map(_flag)
    listed = m[f"{target}_path"].astype(str).str.strip() != ""
    m["has_target"] = (labelled & listed).astype(int)
    m["target_mask_listed"] = [
        bool(x) if lab else None for lab, x in zip(labelled, listed, strict=True)
    ]
    m["image_listed"] = m["image_path"].astype(str).str.strip() != ""
    m["declared_dtype"] = m["dtype"].astype(str).where(m["image_listed"], None)
    splits = m.groupby("field_id")["split"].agg(lambda s: "+".join(sorted(set(map(str, s)))))
    m["field_splits"] = m["field_id"].map(splits)
    return m


def _image_summary(arr: np.ndarray | None, channels: list[str]) -> dict[str, Any]:
    """What the checks need from an image file (None: unreadable)."""
    if arr is None:
        return {"readable": False}
    arr3 = arr[None] if arr.ndim == 2 else arr
    out: dict[str, Any] = {
        "readable": True,
        "shape": tuple(arr.shape),
        "ndim": arr.ndim,
        "dtype": str(arr.dtype),
        "hash": sha256_array(arr),
    }
    top = np.iinfo(arr.dtype).max if np.issubdtype(arr.dtype, np.integer) else None
    for c, name in enumerate(channels):
        if arr3.ndim == 3 and c < arr3.shape[0]:
            ch = arr3[c]
            lo, hi = ch.min().item(), ch.max().item()
            out[name] = {
                "min": lo,
                "max": hi,
                "std": float(ch.std()),
                "range": float(hi - lo),
                "saturated": float((ch == top).mean()) if top is not None else 0.0,
            }
    return out


def _mask_summary(lab: np.ndarray | None) -> dict[str, Any]:
    """What the checks need from a label file: shape, dtype, object ids and areas."""
    if lab is None:
        return {"readable": False}
    out: dict[str, Any] = {"readable": True, "shape": tuple(lab.shape), "dtype": str(lab.dtype)}
    if lab.ndim == 2 and np.issubdtype(lab.dtype, np.integer):
        areas = np.bincount(lab.ravel().astype(np.int64).clip(0))
        ids = np.flatnonzero(areas[1:]) + 1
        out |= {
            "ids": ids,
            "areas": areas[ids],
            "size": lab.size,
            "coverage": float((lab > 0).mean()),
        }
    return out


class _Reader:
    """Reads each distinct set of files once and keeps summaries, never the arrays."""

    def __init__(self, root: Path, channels: list[str]) -> None:
        self.root, self.channels = root, channels
        self.cache: dict[tuple, dict[str, Any]] = {}

    def _read(self, rel: str) -> np.ndarray | None:
        """The file's array, or None when it does not read or holds no pixels (a header
        without a valid page reads as an empty array)."""
        try:
            arr = read_tif(self.root / rel)
        except DataError as exc:
            log.debug("unreadable file: %s", exc)
            return None
        return arr if arr.size else None

    def field(self, image_path: str, masks: dict[str, str], shape: tuple) -> dict[str, Any]:
        """Summaries of one field's image and label files and their combined content hash.

        A field without an image (masks-only datasets) hashes as ingest stores it: an empty
        (0, H, W) uint8 array; its image checks stay null ("fields_have_images" reports it).
        """
        key = (image_path, tuple(sorted(masks.items())), shape)
        if key not in self.cache:
            image = self._read(image_path) if image_path else None
            labels = {k: self._read(rel) for k, rel in masks.items()}
            summary = _image_summary(image, self.channels)
            if not image_path:
                summary["readable"] = None
                if None not in shape:
                    image = np.zeros((0, *shape), np.uint8)
            ok = image is not None and all(v is not None for v in labels.values())
            self.cache[key] = {
                "image": summary,
                "masks": {k: _mask_summary(v) for k, v in labels.items()},
                "content_hash": sha256_array(image, *(labels[k] for k in sorted(labels)))
                if ok
                else None,
            }
        return self.cache[key]


def _image_columns(info: dict, row: dict, channels: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"image_readable": info["readable"]}
    if not info["readable"]:  # unreadable (False) or absent (None)
        return out
    shape = info["shape"]
    n_decl = _int(row.get("n_channels"))
    has_all = info["ndim"] == 3 and shape[0] == len(channels) == n_decl
    out["image_has_all_channels"] = bool(has_all)
    out["image_shape_matches"] = tuple(shape[-2:]) == (
        _int(row.get("height")),
        _int(row.get("width")),
    )
    out["image_dtype_matches"] = info["dtype"] == str(row.get("dtype", ""))
    out["image_hash"] = info["hash"]
    matches = True
    for name in channels:
        stats = info.get(name)
        if stats is None:
            continue
        out |= {
            f"{name}_std": stats["std"],
            f"{name}_range": stats["range"],
            f"{name}_saturated": stats["saturated"],
        }
        declared = (row.get(f"{name}_min"), row.get(f"{name}_max"))
        if all(d is not None and str(d).strip() != "" for d in declared):
            matches &= (float(declared[0]), float(declared[1])) == (stats["min"], stats["max"])
    out["image_values_match"] = bool(matches)
    return out


def _mask_columns(masks: dict[str, dict], target: str, shape: tuple) -> dict[str, Any]:
    if not masks:
        return {}
    out: dict[str, Any] = {"masks_readable": all(m["readable"] for m in masks.values())}
    readable = [m for m in masks.values() if m["readable"]]
    if readable:
        out["masks_shape_match"] = all(m["shape"] == shape for m in readable)
        out["masks_dtype"] = "+".join(sorted({m["dtype"] for m in readable}))
    lab = masks.get(target, {})
    if "ids" in lab:
        out["n_objects"] = float(len(lab["ids"]))
        out["coverage"] = lab["coverage"]
    return out


_BOOL_COLUMNS = (
    "image_has_all_channels",
    "image_shape_matches",
    "image_dtype_matches",
    "image_values_match",
    "content_hash_matches",
    "masks_readable",
    "masks_shape_match",
)


def _typed_fields(fields: pd.DataFrame, channels: list[str]) -> pd.DataFrame:
    """Every column the checks read, present and typed: flags as True/False/None (None: the
    file could not answer), statistics as float."""
    numeric = ["n_objects", "coverage"] + [
        f"{c}_{s}" for c in channels for s in ("std", "range", "saturated")
    ]
    base = ("field_id", "split", "image_path", "mask_path", "image_readable", "image_hash")
    for col in (*base, *_BOOL_COLUMNS, "masks_dtype", *numeric):
        if col not in fields.columns:
            fields[col] = None
    for col in _BOOL_COLUMNS:
        fields[col] = fields[col].astype(object).where(fields[col].notna(), None)
    for col in numeric:
        fields[col] = pd.to_numeric(fields[col], errors="coerce").astype(float)
    return fields


def build_tables(
    root: str | Path, manifest: pd.DataFrame, channels: list[str], target: str
) -> Tables:
    """Read every file the manifest lists (once) and build the three tables the suite checks."""
    reader = _Reader(Path(root), channels)
    m = manifest_table(manifest, target)
    rows, objects, seen_masks, seen_rows = [], [], set(), set()
    for row in m.to_dict("records"):
        image_path = str(row.get("image_path", "")).strip()
        masks = {k: str(row.get(f"{k}_path", "")).strip() for k in LABEL_SETS}
        masks = {k: v for k, v in masks.items() if v}
        key = (row["field_id"], image_path, tuple(sorted(masks.items())))
        if key in seen_rows:  # a repeated manifest row: the manifest checks report it
            continue
        seen_rows.add(key)
        shape = (_int(row.get("height")), _int(row.get("width")))
        info = reader.field(image_path, masks, shape)
        rec: dict[str, Any] = {
            "field_id": row["field_id"],
            "split": row["split"],
            "image_path": image_path,
            "mask_path": masks.get(target, ""),
            "raw_files": str(row.get("sources", "") or ""),  # raw inputs, relative to the source
        }
        rec |= _image_columns(info["image"], row, channels)
        rec |= _mask_columns(info["masks"], target, shape)
        if info["content_hash"] is not None:
            rec["content_hash_matches"] = info["content_hash"] == str(row.get("content_hash"))
        rows.append(rec)
        lab = info["masks"].get(target, {})
        if "ids" in lab and masks[target] not in seen_masks:
            seen_masks.add(masks[target])
            objects += [
                {
                    "field_id": row["field_id"],
                    "mask_path": masks[target],
                    "label": int(i),
                    "area": int(a),
                    "area_fraction": float(a) / lab["size"],
                }
                for i, a in zip(lab["ids"], lab["areas"], strict=True)
            ]
    fields = _typed_fields(pd.DataFrame(rows), channels)
    objects_df = pd.DataFrame(
        objects, columns=["field_id", "mask_path", "label", "area", "area_fraction"]
    )
    return Tables(m, fields, objects_df)
