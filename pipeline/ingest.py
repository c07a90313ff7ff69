"""Ingest stage: raw layout on disk -> one immutable, content-addressed dataset version.

A dataset version is a folder ``<data_dir>/datasets/<layout>-<id>/``::

    dataset.json                      id, layout, source, channels, overlap rule, skipped files
    manifest.csv                      one row per field (ids, paths, shapes, stats, counts, split)
    fields/<n>/image.tif              (C, H, W) raw intensities, uint8/uint16
    fields/<n>/cells.tif, nuclei.tif  (H, W) uint16 instance labels, 0 = background

The id is a hash of every array and the split assignment, so identical inputs give the same id
and changing one pixel gives a new one. The folder is written to a temporary name and renamed
into place, so a crash never leaves a half-written version and never touches an older one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import PipelineConfig
from pipeline.demo import DemoSpec, generate_demo
from pipeline.io import DataError, sha256_array, write_json, write_tif
from pipeline.layouts import OVERLAP_RULE, Field, get_layout

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
UNLABELLED = "unlabelled"


@dataclass
class DatasetRef:
    dataset_id: str
    uri: str  # folder of the dataset version
    layout: str
    n_fields: int
    n_labelled: int
    n_skipped_files: int

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_source(cfg: PipelineConfig) -> Path:
    """The folder to parse: the demo set (generated on demand) or the configured path."""
    d = cfg.data
    if d.source == "demo":
        if d.layout != "bbbc020":
            raise DataError(f"data.source=demo generates BBBC020 layout, but data.layout={d.layout!r}")
        spec = DemoSpec(d.demo_fields, d.demo_height, d.demo_width, d.demo_seed)
        root = Path(cfg.paths.data_dir) / "raw" / f"bbbc020-demo-s{d.demo_seed}-n{d.demo_fields}"
        return generate_demo(root, spec)
    root = Path(d.source).expanduser()
    if not root.is_dir():
        raise DataError(
            f"dataset folder {root} does not exist; set data.source to an extracted "
            f"{d.layout} folder (or 'demo')"
        )
    return root


def assign_splits(
    fields: list[Field], strategy: str, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, str]:
    """Deterministic split by field: field_id -> train | val | test | unlabelled.

    ``stratified``: fields of each group are shuffled (seeded by field id, not by order) and the
    groups interleaved, so each split draws evenly from every condition. ``contiguous``: frames of
    a sequence stay in time order, the last block goes to test and the block before it to val.
    At least one field goes to val and test whenever there are three or more labelled fields.
    """
    labelled = [f for f in fields if f.labels]
    out = {f.field_id: UNLABELLED for f in fields if not f.labels}
    n = len(labelled)
    n_test = max(1, math.ceil(n * test_fraction)) if n >= 3 else 0
    n_val = max(1, math.ceil(n * val_fraction)) if n >= 3 else 0

    def key(f: Field) -> str:
        return hashlib.sha256(f"{seed}:{f.field_id}".encode()).hexdigest()

    groups: dict[str, list[Field]] = {}
    for f in labelled:
        groups.setdefault(f.group, []).append(f)
    if strategy == "contiguous":
        ordered = sorted(labelled, key=lambda f: f.field_id)
        order = ordered[n - n_test:] + ordered[n - n_test - n_val: n - n_test] + ordered[: n - n_test - n_val]
    else:
        queues = [sorted(g, key=key) for _, g in sorted(groups.items())]
        order = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
    for i, f in enumerate(order):
        out[f.field_id] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return out


def _field_row(f: Field, index: int, split: str, channels: tuple[str, ...]) -> dict:
    row = {
        "field_id": f.field_id, "group": f.group, "split": split, "labelled": bool(f.labels),
        "image_path": f"fields/{index:04d}/image.tif", "height": f.image.shape[1],
        "width": f.image.shape[2], "n_channels": f.image.shape[0], "dtype": str(f.image.dtype),
        "content_hash": sha256_array(f.image, *(f.labels[k] for k in sorted(f.labels))),
        "sources": ";".join(f.sources),
    }
    for c, name in enumerate(channels[: f.image.shape[0]]):
        ch = f.image[c]
        row |= {f"{name}_min": int(ch.min()), f"{name}_max": int(ch.max()),
                f"{name}_mean": float(ch.mean()), f"{name}_std": float(ch.std())}
    for key in ("cells", "nuclei"):
        lab = f.labels.get(key)
        row[f"{key}_path"] = f"fields/{index:04d}/{key}.tif" if lab is not None else ""
        row[f"n_{key}"] = int(len(np.unique(lab)) - 1) if lab is not None else 0
        row[f"{key}_coverage"] = float((lab > 0).mean()) if lab is not None else 0.0
    return row


def ingest(cfg: PipelineConfig) -> DatasetRef:
    """Parse the configured source into a dataset version (reused if it already exists)."""
    layout = get_layout(cfg.data.layout)
    if cfg.data.target not in layout.target_channel:
        raise DataError(
            f"data.target={cfg.data.target!r} is not available in layout {layout.name!r}; "
            f"choose one of {', '.join(layout.target_channel)}"
        )
    source = resolve_source(cfg)
    parsed = parse_checked(layout.parse, source)
    p = cfg.preprocess
    splits = assign_splits(parsed.fields, layout.split, p.val_fraction, p.test_fraction, p.split_seed)
    rows = [_field_row(f, i, splits[f.field_id], layout.channels) for i, f in enumerate(parsed.fields)]
    digest = hashlib.sha256(
        json.dumps([(r["field_id"], r["content_hash"], r["split"]) for r in rows]).encode()
    ).hexdigest()[:12]
    final = Path(cfg.paths.data_dir) / "datasets" / f"{layout.name}-{digest}"
    ref = DatasetRef(digest, str(final), layout.name, len(rows),
                     sum(r["labelled"] for r in rows), len(parsed.skipped))
    if (final / "dataset.json").is_file():
        log.info("dataset version %s already exists at %s", digest, final)
        return ref
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        for i, f in enumerate(parsed.fields):
            write_tif(tmp / f"fields/{i:04d}/image.tif", f.image)
            for key, lab in f.labels.items():
                write_tif(tmp / f"fields/{i:04d}/{key}.tif", lab)
        pd.DataFrame(rows).to_csv(tmp / "manifest.csv", index=False)
        write_json(tmp / "dataset.json", {
            "dataset_id": digest, "layout": layout.name, "source": str(source),
            "channels": list(layout.channels), "overlap_rule": OVERLAP_RULE,
            "skipped_files": parsed.skipped, "n_fields": ref.n_fields,
            "n_labelled": ref.n_labelled, "split_strategy": layout.split,
        })
        try:
            tmp.rename(final)
        except OSError:  # a concurrent run wrote the same content-addressed version first
            if not (final / "dataset.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("ingested %d fields (%d labelled, %d files skipped) as %s",
             ref.n_fields, ref.n_labelled, ref.n_skipped_files, final)
    return ref


def parse_checked(parse, source: Path):
    result = parse(source)
    if not result.fields:
        raise DataError(f"{source}: no fields found; check data.source and data.layout")
    for path in result.skipped:
        log.warning("skipped %s", path)
    return result


def load_manifest(dataset_uri: str | Path) -> tuple[pd.DataFrame, dict]:
    """Read a dataset version's manifest table and metadata."""
    root = Path(dataset_uri)
    if not (root / "dataset.json").is_file():
        raise DataError(f"{root}: not a dataset version (no dataset.json); run `cellseg ingest` first")
    meta = json.loads((root / "dataset.json").read_text())
    manifest = pd.read_csv(root / "manifest.csv", keep_default_na=False)
    return manifest, meta
