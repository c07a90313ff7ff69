"""Cell Tracking Challenge layout: ``SEQ/tNNN.tif`` with ``SEQ_GT|SEQ_ST/SEG/man_segNNN.tif``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from pipeline.errors import DataError
from pipeline.ingest.layouts.base import Field, ParseResult
from pipeline.io import read_tif


def _ctc_datasets(root: Path) -> list[Path]:
    """CTC dataset folders: `root` itself if it holds ``01/``, ``02/`` ..., else its subfolders."""

    def is_seq_parent(p: Path) -> bool:
        return any(q.is_dir() and re.fullmatch(r"\d+", q.name) for q in p.iterdir())

    if not root.is_dir():
        raise DataError(f"{root}: not a folder; point data.source at a CTC dataset folder")
    if is_seq_parent(root):
        return [root]
    return [p for p in sorted(root.iterdir()) if p.is_dir() and is_seq_parent(p)]


def parse_ctc(root: Path) -> ParseResult:
    """Cell Tracking Challenge: ``SEQ/tNNN.tif`` + ``SEQ_GT|SEQ_ST/SEG/man_segNNN.tif``.

    Each frame is a (1, H, W) field (uint8 or uint16); its ``nuclei`` labels are the (H, W) uint16
    man_seg image (GT preferred over ST, 0 = background); frames without one are unlabelled.
    `root` may be one dataset (``Fluo-N2DL-HeLa/``) or a folder of datasets (field ids and groups
    are then prefixed with the dataset name). Group = sequence, for contiguous splits.
    """
    datasets = _ctc_datasets(root)
    if not datasets:
        raise DataError(
            f"{root}: no CTC sequence folders (01/, 02/ ...); point data.source at a CTC dataset"
        )
    out, skipped = [], []
    for ds in datasets:
        prefix = "" if ds == root else f"{ds.name}-"
        for seq in sorted(p for p in ds.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name)):
            seg_dirs = [ds / f"{seq.name}_{kind}" / "SEG" for kind in ("GT", "ST")]
            for frame in sorted(seq.glob("t*.tif")):
                num = frame.stem[1:]
                image = read_tif(frame)
                if image.ndim != 2:
                    raise DataError(f"{frame}: expected a 2-D frame, got shape {image.shape}")
                labels, sources = {}, [str(frame.relative_to(root))]
                for mask in (seg / f"man_seg{num}.tif" for seg in seg_dirs):
                    if mask.is_file():
                        lab = read_tif(mask)
                        if lab.shape != image.shape:
                            raise DataError(
                                f"{mask}: shape {lab.shape} != frame shape {image.shape}"
                            )
                        if lab.min() < 0 or lab.max() >= 2**16:
                            raise DataError(
                                f"{mask}: labels {lab.min()}..{lab.max()} do not fit uint16"
                            )
                        labels["nuclei"] = lab.astype(np.uint16)
                        sources.append(str(mask.relative_to(root)))
                        break
                out.append(
                    Field(
                        f"{prefix}{seq.name}-t{num}",
                        f"{prefix}{seq.name}",
                        image[None],
                        labels,
                        sources,
                    )
                )
    return ParseResult(out, skipped)
