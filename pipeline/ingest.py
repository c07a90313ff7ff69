"""Ingest stage: raw data (any source kind) -> one immutable, content-addressed dataset version.

`pipeline.sources` turns ``data.source`` (demo, broad, http(s)://, s3://, archives, a folder)
into a folder; the layout's parser reads it; the result is written as a dataset version, a folder
``<data_dir>/datasets/<layout>-<id>/``::

    dataset.json                      id, layout, source, channels, overlap rule, skipped files
    manifest.csv                      one row per field (ids, paths, shapes, stats, counts, split)
    fields/<n>/image.tif              (C, H, W) raw intensities, uint8/uint16 (absent when C = 0)
    fields/<n>/cells.tif, nuclei.tif  (H, W) uint16 instance labels, 0 = background

The id is a hash of every array and the split assignment, so identical inputs give the same id
and changing one pixel gives a new one. The folder is written to a temporary name and renamed
into place, so a crash, a kill or a full disk never leaves a half-written version and never
touches an older one; a re-run starts clean.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import socket
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import PipelineConfig
from pipeline.io import (
    DataError,
    disk_full_is_data_error,
    publish_dir,
    sha256_array,
    write_json,
    write_tif,
)
from pipeline.layouts import OVERLAP_RULE, Field, ParseResult, get_layout
from pipeline.sources import resolve_source

log = logging.getLogger(__name__)

UNLABELLED = "unlabelled"
MANIFEST_VERSION = 2  # part of the dataset id: a new manifest format never reuses an old folder
LABEL_KEYS = ("cells", "nuclei")


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


def _quotas(sizes: dict[str, int], total: int) -> dict[str, int]:
    """Split `total` over groups in proportion to `sizes` (largest remainder, ties by name)."""
    n = sum(sizes.values())
    exact = {g: total * k / n for g, k in sizes.items()} if n else {}
    out = {g: math.floor(x) for g, x in exact.items()}
    for g in sorted(exact, key=lambda g: (out[g] - exact[g], g))[: total - sum(out.values())]:
        out[g] += 1
    return out


def assign_splits(
    fields: list[Field], strategy: str, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, str]:
    """Deterministic split by field: field_id -> train | val | test | unlabelled.

    ``stratified``: fields of each group are shuffled (seeded by field id, not by order) and the
    groups interleaved in a seeded order, so each split draws evenly from every condition.
    ``contiguous``: frames of each sequence (group) stay in time order; the last block of every
    sequence goes to test and the block before it to val, block sizes in proportion to the
    sequence lengths.
    At least one field goes to val and test whenever there are three or more labelled fields.
    A field is in exactly one split; unlabelled fields are never in train, val or test.
    """
    if strategy not in ("stratified", "contiguous"):
        raise ValueError(f"split strategy {strategy!r}: use 'stratified' or 'contiguous'")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction={val_fraction}, test_fraction={test_fraction}: each must "
            "be in [0, 1) and their sum below 1"
        )
    ids = [f.field_id for f in fields]
    if len(set(ids)) != len(ids):
        raise DataError(f"duplicate field ids: {sorted({i for i in ids if ids.count(i) > 1})}")
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
        sizes = {g: len(v) for g, v in groups.items()}
        t_q, v_q = _quotas(sizes, n_test), _quotas(sizes, n_val)
        for g, members in groups.items():
            frames = sorted(members, key=lambda f: f.field_id)[::-1]  # latest first
            for i, f in enumerate(frames):
                out[f.field_id] = (
                    "test" if i < t_q[g] else "val" if i < t_q[g] + v_q[g] else "train"
                )
        return out
    # Groups take turns in a seeded order, so with fewer test slots than groups the group left
    # out of test changes with the seed (and comes first for val) instead of always the last name.
    turn = sorted(groups, key=lambda g: hashlib.sha256(f"{seed}:group:{g}".encode()).hexdigest())
    queues = [sorted(groups[g], key=key) for g in turn]
    order = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
    for i, f in enumerate(order):
        out[f.field_id] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return out


def _label_columns(key: str, lab: np.ndarray | None, f: Field, index: int) -> dict:
    """Per label set: path, object count, coverage, object areas (px), overlap statistics."""
    areas = np.bincount(lab.ravel())[1:] if lab is not None else np.zeros(0, np.int64)
    areas = areas[areas > 0]
    return {
        f"{key}_path": f"fields/{index:04d}/{key}.tif" if lab is not None else "",
        f"n_{key}": int(areas.size),
        f"{key}_coverage": float((lab > 0).mean()) if lab is not None else 0.0,
        f"{key}_area_min": int(areas.min()) if areas.size else 0,
        f"{key}_area_median": float(np.median(areas)) if areas.size else 0.0,
        f"{key}_area_max": int(areas.max()) if areas.size else 0,
        f"{key}_overlap_px": int(f.stats.get(f"{key}_overlap_px", 0)),
        f"{key}_hidden": int(f.stats.get(f"{key}_hidden", 0)),
    }


def _field_row(f: Field, index: int, split: str, channels: tuple[str, ...]) -> dict:
    """One manifest row. Fields without an image (C = 0) get an empty image_path and no stats."""
    c, h, w = f.image.shape
    row = {
        "field_id": f.field_id,
        "group": f.group,
        "split": split,
        "labelled": bool(f.labels),
        "image_path": f"fields/{index:04d}/image.tif" if c else "",
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
    for key in LABEL_KEYS:
        row |= _label_columns(key, f.labels.get(key), f, index)
    return row


def _check_fields(parsed: ParseResult, source: Path) -> None:
    if not parsed.fields:
        raise DataError(f"{source}: no fields found; check data.source and data.layout")
    for f in parsed.fields:
        if f.image.ndim != 3:
            raise DataError(
                f"{source}: field {f.field_id}: image shape {f.image.shape} is not (C, H, W)"
            )
        for key, lab in f.labels.items():
            if lab.shape != f.image.shape[1:] or lab.dtype != np.uint16:
                raise DataError(
                    f"{source}: field {f.field_id}: {key} labels {lab.shape} "
                    f"{lab.dtype} do not match image {f.image.shape} (need uint16)"
                )


def _remove_stale_temps(datasets: Path) -> None:
    """Delete temporary version folders left by killed ingestions of this host (dead pids)."""
    host = socket.gethostname()
    for tmp in datasets.glob(".*-*.*"):
        m = re.fullmatch(r"\.[^.]+\.(?P<host>.+)-(?P<pid>\d+)\.[^.]+", tmp.name)
        if not (tmp.is_dir() and m and m["host"] == host):
            continue
        try:
            os.kill(int(m["pid"]), 0)
        except ProcessLookupError:
            log.info("removing %s, left by a killed ingestion (pid %s)", tmp, m["pid"])
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's process


def _write_version(tmp: Path, parsed: ParseResult, rows: list[dict], meta: dict) -> None:
    for i, f in enumerate(parsed.fields):
        if f.image.shape[0]:
            write_tif(tmp / f"fields/{i:04d}/image.tif", f.image)
        for key, lab in f.labels.items():
            write_tif(tmp / f"fields/{i:04d}/{key}.tif", lab)
    pd.DataFrame(rows).to_csv(tmp / "manifest.csv", index=False)
    write_json(tmp / "dataset.json", meta)


def ingest(cfg: PipelineConfig) -> DatasetRef:
    """Parse the configured source into a dataset version (reused if it already exists)."""
    layout = get_layout(cfg.data.layout)
    if cfg.data.target not in layout.target_channel:
        raise DataError(
            f"data.target={cfg.data.target!r} is not available in layout {layout.name!r}; "
            f"choose one of {', '.join(layout.target_channel)}"
        )
    source, source_info = resolve_source(cfg)
    parsed = parse_checked(layout.parse, source)
    p = cfg.preprocess
    splits = assign_splits(
        parsed.fields, layout.split, p.val_fraction, p.test_fraction, p.split_seed
    )
    rows = [
        _field_row(f, i, splits[f.field_id], layout.channels) for i, f in enumerate(parsed.fields)
    ]
    digest = hashlib.sha256(
        json.dumps(
            [
                MANIFEST_VERSION,
                layout.name,
                *[(r["field_id"], r["content_hash"], r["split"]) for r in rows],
            ]
        ).encode()
    ).hexdigest()[:12]
    final = Path(cfg.paths.data_dir) / "datasets" / f"{layout.name}-{digest}"
    ref = DatasetRef(
        digest,
        str(final),
        layout.name,
        len(rows),
        sum(r["labelled"] for r in rows),
        len(parsed.skipped),
    )
    if (final / "dataset.json").is_file():
        log.info("dataset version %s already exists at %s", digest, final)
        return ref
    meta = {
        "dataset_id": digest,
        "layout": layout.name,
        "source": str(source),
        "source_info": source_info,
        "channels": list(layout.channels),
        "label_convention": "uint16 instance labels, 0 = background, 1..N = objects",
        "overlap_rule": OVERLAP_RULE,
        "skipped_files": parsed.skipped,
        "n_skipped_files": ref.n_skipped_files,
        "n_fields": ref.n_fields,
        "n_labelled": ref.n_labelled,
        "split_strategy": layout.split,
        "manifest_version": MANIFEST_VERSION,
    }
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(final.parent)
    owner = f"{socket.gethostname()}-{os.getpid()}"  # lets a later run clean up after a kill
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{owner}.", dir=final.parent))
    full = (
        f"{final.parent}: disk full while writing dataset {digest}; free space and re-run "
        "(earlier versions are intact)"
    )
    try:
        with disk_full_is_data_error(full):
            _write_version(tmp, parsed, rows, meta)
            publish_dir(tmp, final)  # a concurrent run may have written the same version first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "ingested %d fields (%d labelled, %d files skipped) as %s",
        ref.n_fields,
        ref.n_labelled,
        ref.n_skipped_files,
        final,
    )
    return ref


def parse_checked(parse, source: Path) -> ParseResult:
    """Run a layout parser, check its fields, and log every skipped file by name."""
    result = parse(source)
    _check_fields(result, source)
    for entry in result.skipped:
        log.warning("skipped %s", entry)
    if result.skipped:
        log.warning(
            "%d file(s) skipped in %s (listed in dataset.json)", len(result.skipped), source
        )
    return result


def load_manifest(dataset_uri: str | Path) -> tuple[pd.DataFrame, dict]:
    """Read a dataset version's manifest table and metadata."""
    root = Path(dataset_uri)
    if not (root / "dataset.json").is_file():
        raise DataError(
            f"{root}: not a dataset version (no dataset.json); run `cellseg ingest` first"
        )
    meta = json.loads((root / "dataset.json").read_text())
    manifest = pd.read_csv(root / "manifest.csv", keep_default_na=False)
    return manifest, meta
