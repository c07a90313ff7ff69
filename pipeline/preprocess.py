"""Preprocess stage: a dataset version -> normalised, split arrays in the run folder.

Output ``<run_dir>/preprocess/``::

    index.json              [{field_id, split, file}], the split of every field
    <split>/<safe_id>.npz   image  (C, H, W) float32 in [0, 1] after percentile normalisation
                            raw    (C, H, W) original intensities (classical methods use these)
                            cells / nuclei  (H, W) int32 instance labels, 0 = background

Splits come from the dataset manifest (assigned by field at ingest, never per pixel or tile).
Unlabelled fields are kept under ``unlabelled/`` for prediction only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.config import PipelineConfig
from pipeline.ingest import load_manifest
from pipeline.io import DataError, atomic_path, read_tif, safe_name, write_json

log = logging.getLogger(__name__)


@dataclass
class PreparedRef:
    uri: str
    dataset_id: str
    channels: list[str]
    target: str
    counts: dict[str, int]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Sample:
    field_id: str
    split: str
    image: np.ndarray  # (C, H, W) float32 normalised
    raw: np.ndarray  # (C, H, W) raw intensities
    labels: dict[str, np.ndarray]  # (H, W) int32 instance labels


def normalise(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Per-channel percentile normalisation of a (C, H, W) image to float32 in [0, 1]."""
    if image.ndim != 3:
        raise ValueError(f"normalise expects (C, H, W), got shape {image.shape}")
    out = np.empty(image.shape, np.float32)
    for c, ch in enumerate(image.astype(np.float32)):
        lo, hi = np.percentile(ch, [low, high])
        out[c] = np.clip((ch - lo) / max(hi - lo, 1e-6), 0, 1)
    return out


def channel_indices(meta: dict, channels: list[str]) -> list[int]:
    """Indices of `channels` (empty = all) in a dataset version's channels; unknown ones raise."""
    channels = channels or meta["channels"]
    unknown = [c for c in channels if c not in meta["channels"]]
    if unknown:
        raise DataError(
            f"data.channels {unknown} not in dataset {meta['dataset_id']} "
            f"(channels: {', '.join(meta['channels'])}); fix data.channels"
        )
    return [meta["channels"].index(c) for c in channels]


def read_field(root: Path, row, idx: list[int], low: float, high: float) -> Sample:
    """One manifest row of a dataset version as a Sample (see the module docstring for arrays).

    A field without an image (ground truth only) gets (0, H, W) `image` and `raw` arrays.
    """
    labels = {
        key: read_tif(root / getattr(row, f"{key}_path")).astype(np.int32)
        for key in ("cells", "nuclei")
        if getattr(row, f"{key}_path")
    }
    if row.image_path and row.n_channels:
        raw = read_tif(root / row.image_path)
        raw = (raw[None] if raw.ndim == 2 else raw)[idx]
        image = normalise(raw, low, high)
    else:
        raw = image = np.zeros((0, int(row.height), int(row.width)), np.float32)
    return Sample(row.field_id, row.split, image, raw, labels)


def preprocess(dataset_uri: str, cfg: PipelineConfig, run_dir: str) -> PreparedRef:
    """Normalise every field of the dataset version and write it, by split, into `run_dir`."""
    manifest, meta = load_manifest(dataset_uri)
    idx = channel_indices(meta, cfg.data.channels)
    channels = [meta["channels"][i] for i in idx]
    if not manifest["image_path"].astype(str).str.len().gt(0).any():
        raise DataError(
            f"dataset {meta['dataset_id']} holds labels only (no images), so it cannot train; "
            "ingest the image archive too (it can still score predictions: cellseg evaluate "
            "--predictions DIR --dataset ...)"
        )
    have = manifest["split"].value_counts().to_dict()
    for split in ("train", "val", "test"):
        if have.get(split, 0) == 0:
            raise DataError(
                f"dataset {meta['dataset_id']} has no '{split}' fields (splits: {have}); "
                "add labelled fields or change preprocess.val_fraction/test_fraction"
            )
    root = Path(dataset_uri)
    out = Path(run_dir) / "preprocess"
    index, counts = [], {}
    p = cfg.preprocess
    with atomic_path(out) as tmp:
        for row in manifest.itertuples():
            if not row.image_path or row.n_channels == 0:
                log.warning("field %s has no image; skipped", row.field_id)
                continue
            sample = read_field(root, row, idx, p.low_percentile, p.high_percentile)
            arrays = {"image": sample.image, "raw": sample.raw, **sample.labels}
            rel = f"{row.split}/{safe_name(row.field_id)}.npz"
            (tmp / row.split).mkdir(parents=True, exist_ok=True)
            np.savez_compressed(tmp / rel, **arrays)
            index.append({"field_id": row.field_id, "split": row.split, "file": rel})
            counts[row.split] = counts.get(row.split, 0) + 1
        write_json(tmp / "index.json", index)
    log.info("preprocessed %s into %s: %s", meta["dataset_id"], out, counts)
    return PreparedRef(str(out), meta["dataset_id"], list(channels), cfg.data.target, counts)


def load_split(prepared_uri: str, split: str) -> list[Sample]:
    """Load every sample of one split ("train", "val", "test" or "unlabelled")."""
    root = Path(prepared_uri)
    index_path = root / "index.json"
    if not index_path.is_file():
        raise DataError(f"{root}: no index.json; run `cellseg preprocess` first")
    samples = []
    for entry in json.loads(index_path.read_text()):
        if entry["split"] != split:
            continue
        with np.load(root / entry["file"]) as z:
            labels = {k: z[k] for k in ("cells", "nuclei") if k in z}
            samples.append(Sample(entry["field_id"], split, z["image"], z["raw"], labels))
    return samples
