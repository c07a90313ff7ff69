"""Preprocess stage: a dataset version -> normalised, split arrays in a prepared folder.

Splits come from the dataset manifest (assigned by field at ingest, never per pixel or tile).
Unlabelled fields are kept under ``unlabelled/`` for prediction only; fields without an image
are skipped. Folder layout: `pipeline.preprocess.samples`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.atomic import atomic_path
from pipeline.config import PipelineConfig
from pipeline.conventions import SPLITS, Record
from pipeline.errors import DataError
from pipeline.ingest.manifest import is_labels_only, load_manifest
from pipeline.preprocess.samples import channel_indices, read_field, write_samples

log = logging.getLogger(__name__)


@dataclass
class PreparedRef(Record):
    uri: str
    dataset_id: str
    channels: list[str]
    target: str
    counts: dict[str, int]


def preprocess(dataset_uri: str, cfg: PipelineConfig, out_dir: str | Path) -> PreparedRef:
    """Normalise every field of the dataset version and write it, by split, into `out_dir`."""
    manifest, meta = load_manifest(dataset_uri)
    idx = channel_indices(meta, cfg.data.channels)
    channels = [meta["channels"][i] for i in idx]
    if is_labels_only(manifest):
        raise DataError(
            f"dataset {meta['dataset_id']} holds labels only (no images), so it cannot train; "
            "ingest the image archive too (it can still score predictions: cellseg evaluate "
            "--predictions DIR --dataset ...)"
        )
    have = manifest["split"].value_counts().to_dict()
    for split in SPLITS:
        if have.get(split, 0) == 0:
            raise DataError(
                f"dataset {meta['dataset_id']} has no '{split}' fields (splits: {have}); "
                "add labelled fields or change data.val_fraction/test_fraction"
            )
    root, out, p = Path(dataset_uri), Path(out_dir), cfg.preprocess
    rows = []
    for row in manifest.itertuples():
        if row.image_path and row.n_channels:
            rows.append(row)
        else:
            log.warning("field %s has no image; skipped", row.field_id)
    with atomic_path(out) as tmp:
        counts = write_samples(
            tmp,
            (
                read_field(root, r, idx, p.low_percentile, p.high_percentile, p.normalisation)
                for r in rows
            ),
            {"dataset_id": meta["dataset_id"], "channels": channels, "target": cfg.data.target},
        )
    log.info("preprocessed %s into %s: %s", meta["dataset_id"], out, counts)
    return PreparedRef(str(out), meta["dataset_id"], list(channels), cfg.data.target, counts)
