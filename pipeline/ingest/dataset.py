"""Ingest stage: raw data (any source kind) -> one immutable, content-addressed dataset version.

`pipeline.ingest.sources` turns ``data.source`` (demo, broad, http(s)://, s3://, archives, a
folder) into a folder; the layout's parser reads it; the result is written as a dataset version
(layout in `pipeline.ingest.manifest`) under ``<data_dir>/datasets/<layout>-<id>/``.

The id is a hash of every array and the split assignment, so identical inputs give the same id
and changing one pixel gives a new one. The folder is written to a temporary name and renamed
into place, so a crash, a kill or a full disk never leaves a half-written version and never
touches an older one; a re-run starts clean.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.atomic import disk_full_is_data_error, publish_dir
from pipeline.config import PipelineConfig
from pipeline.conventions import LABEL_CONVENTION, Record
from pipeline.errors import DataError
from pipeline.ingest.layouts import get_layout
from pipeline.ingest.layouts.base import OVERLAP_RULE, ParseResult
from pipeline.ingest.manifest import MANIFEST_VERSION, field_row, is_version, write_version
from pipeline.ingest.sources import resolve_source
from pipeline.ingest.splits import assign_splits

log = logging.getLogger(__name__)


@dataclass
class DatasetRef(Record):
    dataset_id: str
    uri: str  # folder of the dataset version
    layout: str
    n_fields: int
    n_labelled: int
    n_skipped_files: int


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


def _version_id(layout: str, rows: list[dict]) -> str:
    """Content address: every field's id, array hash and split, and the manifest format."""
    key = [
        MANIFEST_VERSION,
        layout,
        *[(r["field_id"], r["content_hash"], r["split"]) for r in rows],
    ]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]


def _publish_version(final: Path, parsed: ParseResult, rows: list[dict], meta: dict) -> None:
    """Write the version under a temporary name next to `final`, then rename it into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(final.parent)
    owner = f"{socket.gethostname()}-{os.getpid()}"  # lets a later run clean up after a kill
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{owner}.", dir=final.parent))
    full = (
        f"{final.parent}: disk full while writing dataset {meta['dataset_id']}; free space and "
        "re-run (earlier versions are intact)"
    )
    try:
        with disk_full_is_data_error(full):
            write_version(tmp, parsed.fields, rows, meta)
            publish_dir(tmp, final)  # a concurrent run may have written the same version first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ingest(cfg: PipelineConfig) -> DatasetRef:
    """Parse the configured source into a dataset version (reused if it already exists)."""
    layout = get_layout(cfg.data.layout)
    layout.check_target(cfg.data.target)
    source, source_info = resolve_source(cfg)
    parsed = parse_checked(layout.parse, source)
    d = cfg.data
    splits = assign_splits(
        parsed.fields, layout.split, d.val_fraction, d.test_fraction, d.split_seed
    )
    rows = [
        field_row(f, i, splits[f.field_id], layout.channels) for i, f in enumerate(parsed.fields)
    ]
    digest = _version_id(layout.name, rows)
    final = Path(cfg.paths.data_dir) / "datasets" / f"{layout.name}-{digest}"
    n_labelled = sum(r["labelled"] for r in rows)
    ref = DatasetRef(digest, str(final), layout.name, len(rows), n_labelled, len(parsed.skipped))
    if is_version(final):
        log.info("dataset version %s already exists at %s", digest, final)
        return ref
    meta = {
        "dataset_id": digest,
        "layout": layout.name,
        "source": str(source),
        "source_info": source_info,
        "channels": list(layout.channels),
        "label_convention": LABEL_CONVENTION,
        "overlap_rule": OVERLAP_RULE,
        "skipped_files": parsed.skipped,
        "n_skipped_files": ref.n_skipped_files,
        "n_fields": ref.n_fields,
        "n_labelled": ref.n_labelled,
        "split_strategy": layout.split,
        "manifest_version": MANIFEST_VERSION,
    }
    _publish_version(final, parsed, rows, meta)
    log.info(
        "ingested %d fields (%d labelled, %d files skipped) as %s",
        ref.n_fields,
        ref.n_labelled,
        ref.n_skipped_files,
        final,
    )
    return ref
