"""BBBC020 layout: ``BBBC020_v1_images/<field>/<field>_c1|c5.TIF`` (false-colour RGB) and
per-object masks in ``BBC020_v1_outlines_cells|nuclei/<field>_c1|c5_<n>.TIF``."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from pipeline.colour import colour_intensity
from pipeline.errors import DataError
from pipeline.ingest.layouts.base import Field, ParseResult, merge_objects, overlap_stats
from pipeline.io import read_tif

log = logging.getLogger(__name__)


def _rgb_intensity(path: Path) -> np.ndarray:
    """BBBC020 stores grey values through a false-colour lookup: intensity = max over colour."""
    arr = colour_intensity(read_tif(path))
    if arr.ndim != 2:
        raise DataError(f"{path}: expected a 2-D or RGB image, got shape {arr.shape}")
    return arr


_OBJ = re.compile(r"^(?P<field>.+)_(?P<chan>c1|c5)_(?P<n>\d+)\.tiff?$", re.IGNORECASE)


def _find_dir(root: Path, *names: str) -> Path:
    """``root/<name>`` or ``root/<any>/<name>`` (archives may nest one level), case-insensitive."""
    wanted = {n.lower() for n in names}
    for base in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
        for p in sorted(base.iterdir()) if base.is_dir() else []:
            if p.is_dir() and p.name.lower() in wanted:
                return p
    return root / names[0]


def _bbbc020_objects(folder: Path, chan: str, skipped: list[str]) -> dict[str, list[Path]]:
    """field name -> object mask files ``<field>_<chan>_<n>.TIF`` in the order of n."""
    by_field: dict[str, list[tuple[int, Path]]] = {}
    if not folder.is_dir():
        return {}
    for path in sorted(folder.iterdir()):
        m = _OBJ.match(path.name)
        if m and m["chan"].lower() == chan:
            by_field.setdefault(m["field"], []).append((int(m["n"]), path))
        elif not path.name.startswith("."):
            skipped.append(f"{path}: name does not match <field>_{chan}_<n>.TIF")
    return {k: [p for _, p in sorted(v)] for k, v in by_field.items()}


def _read_masks(
    paths: list[Path], shape: tuple[int, ...] | None, skipped: list[str]
) -> list[np.ndarray]:
    """Read object masks as (H, W) bool; unreadable, empty or mis-shaped files are skipped."""
    masks = []
    for path in paths:
        try:
            m = read_tif(path)
        except DataError as exc:
            log.warning("skipping corrupt object file %s: %s", path.name, exc)
            skipped.append(f"{path}: unreadable")
            continue
        if m.ndim == 3 and m.shape[-1] in (3, 4):
            m = m[..., :3].max(axis=-1)
        if m.ndim != 2 or not m.size:
            log.warning("skipping corrupt object file %s: shape %s", path.name, m.shape)
            skipped.append(f"{path}: unreadable (array of shape {m.shape}, not a 2-D mask)")
            continue
        shape = shape or m.shape
        if m.shape != shape:
            skipped.append(f"{path}: shape {m.shape} != field shape {shape}")
        elif not m.any():
            skipped.append(f"{path}: empty mask")
        else:
            masks.append(m > 0)
    return masks


def _field(
    root: Path,
    folder: Path,
    name: str,
    objects: dict[str, dict[str, list[Path]]],
    masks_only: bool,
    skipped: list[str],
) -> Field | None:
    """One field: its (2, H, W) image from `folder` (or (0, H, W) when `masks_only`) and its
    merged label sets; None when a masks-only field has no readable object file."""
    files = [folder / f"{name}_{c}.TIF" for c in ("c1", "c5")]
    shape = None
    image = np.zeros((0, 0, 0), np.uint8)
    if not masks_only:
        c1, c5 = (_rgb_intensity(p) for p in files)
        if c1.shape != c5.shape:
            raise DataError(f"{files[1]}: shape {c5.shape} != {files[0].name} shape {c1.shape}")
        image, shape = np.stack([c1, c5]), c1.shape
    labels, stats, sources = {}, {}, [str(p.relative_to(root)) for p in files if p.exists()]
    for key, by_field in objects.items():
        masks = _read_masks(by_field.get(name, []), shape, skipped)
        if masks:
            shape = shape or masks[0].shape
            labels[key] = merge_objects(masks, shape)
            stats |= overlap_stats(masks, labels[key], key)
            mask_folder = by_field[name][0].parent.relative_to(root)
            sources.append(f"{mask_folder}/{name}_{'c1' if key == 'cells' else 'c5'}_*.TIF")
    if masks_only:
        if not labels:
            return None  # every object file of this field was skipped
        image = np.zeros((0, *shape), np.uint8)
    group = re.sub(r"^jw-|\s*\d+$", "", name)
    return Field(name, group, image, labels, sources, stats)


def parse_bbbc020(root: Path) -> ParseResult:
    """Parse an extracted BBBC020 folder (images and/or the two outline folders).

    With images: one field per image folder, (2, H, W) uint8 (c1 = CD11b cells, c5 = DAPI nuclei,
    each the max over the false-colour RGB axis); fields without objects (the 30min series) are
    unlabelled; object files of a field without an image are skipped and reported. Without images
    (e.g. only the nuclei archive): one (0, H, W) field per field name found in the masks.
    """
    if not root.is_dir():
        raise DataError(
            f"{root}: not a folder; point data.source at the extracted BBBC020 archives"
        )
    skipped: list[str] = []
    images = _find_dir(root, "BBBC020_v1_images")
    objects = {
        "cells": _bbbc020_objects(
            _find_dir(root, "BBC020_v1_outlines_cells", "BBBC020_v1_outlines_cells"), "c1", skipped
        ),
        "nuclei": _bbbc020_objects(
            _find_dir(root, "BBC020_v1_outlines_nuclei", "BBBC020_v1_outlines_nuclei"),
            "c5",
            skipped,
        ),
    }
    if not images.is_dir() and not any(objects.values()):
        raise DataError(
            f"{root}: no BBBC020_v1_images/ or BBC020_v1_outlines_* folders; point data.source "
            "at the folder holding the extracted BBBC020 archives"
        )
    names = sorted(p.name for p in images.iterdir() if p.is_dir()) if images.is_dir() else []
    masks_only = not names
    if masks_only:
        names = sorted(set(objects["cells"]) | set(objects["nuclei"]))
    for by_field in objects.values():
        for name in sorted(set(by_field) - set(names)):
            skipped += [f"{p}: no image folder {images.name}/{name}/" for p in by_field[name]]
    out = []
    for name in names:
        f = _field(root, images / name, name, objects, masks_only, skipped)
        if f is not None:
            out.append(f)
    return ParseResult(out, skipped)
