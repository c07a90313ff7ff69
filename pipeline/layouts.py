"""Dataset layouts: each turns a folder on disk into fields of image + instance-label arrays.

A layout is one entry in `LAYOUTS`; `get_layout(name)` raises with the valid names. Every
parser yields `Field` records:

- ``image``: (C, H, W) array of raw intensities (uint8 or uint16), channels named by
  ``Layout.channels``;
- ``labels``: ``{"cells": (H, W) uint16, "nuclei": ...}`` instance label images, 0 = background,
  1..N = objects; only the label sets the field has (empty for unlabelled fields);
- ``group``: the stratum used for splitting (BBBC020 condition/time point, CTC sequence).

Overlap rule (BBBC020 cells overlap): per-object masks are painted largest first, so where two
objects overlap the pixel belongs to the SMALLER object; every object keeps a visible region.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from skimage.measure import label as connected_components

from pipeline.io import DataError, read_tif

log = logging.getLogger(__name__)

OVERLAP_RULE = "overlapping pixels belong to the smaller object (objects painted largest first)"


@dataclass
class Field:
    field_id: str
    group: str
    image: np.ndarray  # (C, H, W) raw intensities
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (H, W) uint16
    sources: list[str] = field(default_factory=list)  # raw files this field was read from


@dataclass
class ParseResult:
    fields: list[Field]
    skipped: list[str]  # "path: reason" for each unreadable file that was skipped


@dataclass(frozen=True)
class Layout:
    name: str
    channels: tuple[str, ...]
    target_channel: dict[str, str]  # label set -> channel a single-channel method should use
    split: str  # "stratified" (by group) or "contiguous" (blocks of frames per group)
    parse: Callable[[Path], ParseResult]


def merge_objects(masks: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Merge per-object boolean masks into one uint16 instance label image (see OVERLAP_RULE).

    Labels are 1..N in the order of `masks`; 0 = background.
    """
    out = np.zeros(shape, np.uint16)
    order = sorted(range(len(masks)), key=lambda i: -int(masks[i].sum()))
    for i in order:
        out[masks[i]] = i + 1
    return out


def _rgb_intensity(path: Path) -> np.ndarray:
    """BBBC020 stores grey values through a false-colour lookup: intensity = max over colour."""
    arr = read_tif(path)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3].max(axis=-1)
    if arr.ndim != 2:
        raise DataError(f"{path}: expected a 2-D or RGB image, got shape {arr.shape}")
    return arr


_OBJ = re.compile(r"^(?P<field>.+)_(?P<chan>c1|c5)_(?P<n>\d+)\.tif$", re.IGNORECASE)


def _bbbc020_objects(folder: Path, skipped: list[str]) -> dict[str, list[tuple[int, Path]]]:
    by_field: dict[str, list[tuple[int, Path]]] = {}
    if not folder.is_dir():
        return by_field
    for path in sorted(folder.iterdir()):
        m = _OBJ.match(path.name)
        if m:
            by_field.setdefault(m["field"], []).append((int(m["n"]), path))
        elif not path.name.startswith("."):
            skipped.append(f"{path}: name does not match <field>_c1|c5_<n>.TIF")
    return by_field


def _read_masks(paths: list[tuple[int, Path]], shape, skipped: list[str]) -> list[np.ndarray]:
    masks = []
    for _, path in sorted(paths):
        try:
            m = read_tif(path)
        except DataError as exc:
            log.warning("skipping corrupt object file: %s", exc)
            skipped.append(f"{path}: unreadable")
            continue
        if shape is not None and m.shape != shape:
            skipped.append(f"{path}: shape {m.shape} != image shape {shape}")
            continue
        if not m.any():
            skipped.append(f"{path}: empty mask")
            continue
        masks.append(m > 0)
    return masks


def parse_bbbc020(root: Path) -> ParseResult:
    """Parse an extracted BBBC020 folder (images and/or the two outline folders)."""
    skipped: list[str] = []
    images = root / "BBBC020_v1_images"
    objects = {
        "cells": _bbbc020_objects(root / "BBC020_v1_outlines_cells", skipped),
        "nuclei": _bbbc020_objects(root / "BBC020_v1_outlines_nuclei", skipped),
    }
    if not images.is_dir() and not any(objects.values()):
        raise DataError(
            f"{root}: no BBBC020_v1_images/ or BBC020_v1_outlines_* folders; point data.source "
            "at the folder holding the extracted BBBC020 archives"
        )
    names = sorted(p.name for p in images.iterdir() if p.is_dir()) if images.is_dir() else []
    if not names:  # masks only (e.g. the nuclei archive alone)
        names = sorted(set(objects["cells"]) | set(objects["nuclei"]))
    out = []
    for name in names:
        fdir = images / name
        sources = [fdir / f"{name}_{c}.TIF" for c in ("c1", "c5")]
        if fdir.is_dir():
            image = np.stack([_rgb_intensity(p) for p in sources])
        else:
            image = np.zeros((0, 0, 0), np.uint8)  # ground truth without its image
        shape = image.shape[1:] if image.size else None
        labels = {}
        for key, by_field in objects.items():
            masks = _read_masks(by_field.get(name, []), shape, skipped)
            if masks:
                labels[key] = merge_objects(masks, shape or masks[0].shape)
        group = re.sub(r"^jw-|\s*\d+$", "", name)
        out.append(Field(name, group, image, labels, [str(p) for p in sources if p.exists()]))
    return ParseResult(out, skipped)


def parse_ctc(root: Path) -> ParseResult:
    """Cell Tracking Challenge: ``SEQ/tNNN.tif`` with ``SEQ_ST/SEG`` or ``SEQ_GT/SEG/man_segNNN.tif``."""
    out, skipped = [], []
    seqs = sorted(p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name))
    if not seqs:
        raise DataError(f"{root}: no CTC sequence folders (01/, 02/ ...); point data.source at a CTC dataset")
    for seq in seqs:
        seg_dirs = [root / f"{seq.name}_{kind}" / "SEG" for kind in ("GT", "ST")]
        for frame in sorted(seq.glob("t*.tif")):
            num = frame.stem[1:]
            image = read_tif(frame)
            if image.ndim != 2:
                raise DataError(f"{frame}: expected a 2-D frame, got shape {image.shape}")
            labels, sources = {}, [str(frame)]
            for seg in seg_dirs:
                mask = seg / f"man_seg{num}.tif"
                if mask.is_file():
                    lab = read_tif(mask)
                    if lab.shape != image.shape:
                        raise DataError(f"{mask}: shape {lab.shape} != frame shape {image.shape}")
                    labels["nuclei"] = lab.astype(np.uint16)
                    sources.append(str(mask))
                    break
            out.append(Field(f"{seq.name}-t{num}", seq.name, image[None], labels, sources))
    return ParseResult(out, skipped)


def parse_folder(root: Path) -> ParseResult:
    """Plain folders: ``images/<stem>.tif`` paired with ``masks/<stem>.tif`` (instance or binary)."""
    images, masks = root / "images", root / "masks"
    if not images.is_dir():
        raise DataError(f"{root}: no images/ folder; a plain dataset needs images/ and masks/")
    out = []
    for path in sorted(images.glob("*.tif*")):
        image = read_tif(path)
        if image.ndim == 3 and image.shape[-1] <= 4:
            image = np.moveaxis(image, -1, 0)
        elif image.ndim == 2:
            image = image[None]
        if image.shape[0] != 1:
            raise DataError(f"{path}: plain layout expects single-channel images, got {image.shape}")
        labels, sources = {}, [str(path)]
        mask_paths = sorted(masks.glob(f"{path.stem}.tif*")) if masks.is_dir() else []
        if mask_paths:
            lab = read_tif(mask_paths[0])
            if lab.shape != image.shape[1:]:
                raise DataError(f"{mask_paths[0]}: shape {lab.shape} != image shape {image.shape[1:]}")
            if lab.max() <= 1 or len(np.unique(lab)) == 2:  # binary: split into components
                lab = connected_components(lab > 0)
            labels["nuclei"] = lab.astype(np.uint16)
            sources.append(str(mask_paths[0]))
        out.append(Field(path.stem, "all", image, labels, sources))
    return ParseResult(out, [])


LAYOUTS: dict[str, Layout] = {
    "bbbc020": Layout("bbbc020", ("c1", "c5"), {"cells": "c1", "nuclei": "c5"}, "stratified",
                      parse_bbbc020),
    "ctc": Layout("ctc", ("fluo",), {"nuclei": "fluo"}, "contiguous", parse_ctc),
    # Plain folders hold one label set, stored and scored as "nuclei" (set data.target=nuclei).
    "folder": Layout("folder", ("ch0",), {"nuclei": "ch0"}, "stratified", parse_folder),
}


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown layout {name!r}; valid layouts: {', '.join(sorted(LAYOUTS))}") from None
