"""Dataset layouts: each turns a folder on disk into fields of image + instance-label arrays.

A layout is one entry in `LAYOUTS`; `get_layout(name)` raises with the valid names. Every
parser yields `Field` records:

- ``image``: (C, H, W) array of raw intensities (uint8 or uint16), channels named by
  ``Layout.channels``;
- ``labels``: ``{"cells": (H, W) uint16, "nuclei": ...}`` instance label images, 0 = background,
  1..N = objects; only the label sets the field has (empty for unlabelled fields);
- ``group``: the stratum used for splitting (BBBC020 condition/time point, CTC sequence).

Overlap rule (BBBC020 cells overlap): per-object masks are painted largest first, so where two
objects overlap the pixel belongs to the SMALLER object. An object keeps a visible region unless
smaller objects cover all of it; such objects are counted per field (``<key>_hidden``), as are the
pixels claimed by two or more objects (``<key>_overlap_px``), so no loss is silent.

A layout may also name the archives it is published as (``archives``, fetched from
``official_base`` for ``data.source: broad``) with their known sha256 sums.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from skimage.measure import label as connected_components

from pipeline.config import ConfigError
from pipeline.io import DataError, read_tif

log = logging.getLogger(__name__)

OVERLAP_RULE = (
    "overlapping pixels belong to the smaller object (objects painted largest first); objects "
    "fully covered by smaller ones are counted in <key>_hidden"
)


@dataclass
class Field:
    """One field of view.

    ``image``: (C, H, W) uint8/uint16 raw intensities; C = 0 for ground truth without its image
    (e.g. the BBBC020 nuclei archive alone), H and W still give the label shape.
    ``labels``: name -> (H, W) uint16 instance labels, 0 = background. ``stats``: per label set
    ``<key>_overlap_px`` (pixels claimed by 2+ objects) and ``<key>_hidden`` (objects left with no
    visible pixel by the overlap rule). ``sources``: raw files, relative to the parsed root.
    """

    field_id: str
    group: str
    image: np.ndarray  # (C, H, W) raw intensities
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (H, W) uint16
    sources: list[str] = field(default_factory=list)  # raw files this field was read from
    stats: dict[str, int] = field(default_factory=dict)


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
    archives: tuple[str, ...] = ()  # default archive names for a URL / S3 / "broad" source
    official_base: str = ""  # where `source: broad` downloads `archives` from
    sha256: dict[str, tuple[str, ...]] = field(default_factory=dict)  # archive -> known sums


def merge_objects(masks: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Merge per-object (H, W) bool masks into one (H, W) uint16 instance label image.

    Labels are 1..N in the order of `masks`, 0 = background. Overlap rule (OVERLAP_RULE): masks
    are painted largest first, so a pixel claimed by several objects belongs to the smallest.
    """
    if len(masks) >= 2**16:
        raise ValueError(f"{len(masks)} objects do not fit uint16 labels (max 65535)")
    for m in masks:
        if m.shape != tuple(shape):
            raise ValueError(f"object mask shape {m.shape} != label shape {tuple(shape)}")
    out = np.zeros(shape, np.uint16)
    order = sorted(range(len(masks)), key=lambda i: -int(np.count_nonzero(masks[i])))
    for i in order:
        out[masks[i]] = i + 1
    return out


def overlap_stats(masks: list[np.ndarray], labels: np.ndarray, key: str) -> dict[str, int]:
    """``<key>_overlap_px``: pixels in 2+ masks; ``<key>_hidden``: masks with no label pixel."""
    count = np.zeros(labels.shape, np.uint16)
    for m in masks:
        count += m
    visible = np.bincount(labels.ravel(), minlength=len(masks) + 1)[1:]
    return {f"{key}_overlap_px": int((count > 1).sum()), f"{key}_hidden": int((visible == 0).sum())}


def _rgb_intensity(path: Path) -> np.ndarray:
    """BBBC020 stores grey values through a false-colour lookup: intensity = max over colour."""
    arr = read_tif(path)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3].max(axis=-1)
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
        files = [images / name / f"{name}_{c}.TIF" for c in ("c1", "c5")]
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
                folder = by_field[name][0].parent.relative_to(root)
                sources.append(f"{folder}/{name}_{'c1' if key == 'cells' else 'c5'}_*.TIF")
        if masks_only:
            if not labels:
                continue  # every object file of this field was skipped
            image = np.zeros((0, *shape), np.uint8)
        group = re.sub(r"^jw-|\s*\d+$", "", name)
        out.append(Field(name, group, image, labels, sources, stats))
    return ParseResult(out, skipped)


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


def _to_labels(lab: np.ndarray, path: Path) -> np.ndarray:
    """A mask image -> (H, W) uint16 instance labels: binary masks (two values, e.g. 0/255) are
    split into 8-connected components; instance masks (3+ values) are kept as they are."""
    if lab.ndim != 2:
        raise DataError(f"{path}: expected a 2-D mask, got shape {lab.shape}")
    values = np.unique(lab)
    if len(values) <= 2:
        return connected_components(
            lab > values.min() if len(values) == 2 else lab > 0, connectivity=2
        ).astype(np.uint16)
    if values.min() < 0 or values.max() >= 2**16:
        raise DataError(f"{path}: labels {values.min()}..{values.max()} do not fit uint16")
    return lab.astype(np.uint16)


def parse_folder(root: Path) -> ParseResult:
    """Plain folders: ``images/<stem>.tif`` paired with ``masks/<stem>.tif`` (instance or binary).

    Images are (H, W) or (H, W, C<=4) single-channel TIFs -> (1, H, W); masks become ``nuclei``
    uint16 labels (binary masks: one label per connected component); images without a mask are
    unlabelled; masks without an image are reported as skipped.
    """
    images, masks = root / "images", root / "masks"
    if not images.is_dir():
        raise DataError(f"{root}: no images/ folder; a plain dataset needs images/ and masks/")
    tifs = ("*.tif", "*.tiff", "*.TIF", "*.TIFF")
    by_stem = {p.stem: p for pat in tifs for p in masks.glob(pat)} if masks.is_dir() else {}
    paths = sorted({p for pat in tifs for p in images.glob(pat)})
    out, skipped = [], []
    for path in paths:
        image = read_tif(path)
        if image.ndim == 3 and image.shape[-1] <= 4:
            image = np.moveaxis(image, -1, 0)
        elif image.ndim == 2:
            image = image[None]
        if image.ndim != 3 or image.shape[0] != 1:
            raise DataError(
                f"{path}: plain layout expects single-channel images, got {image.shape}"
            )
        labels, sources = {}, [str(path.relative_to(root))]
        if (mask := by_stem.get(path.stem)) is not None:
            lab = read_tif(mask)
            if lab.shape != image.shape[1:]:
                raise DataError(f"{mask}: shape {lab.shape} != image shape {image.shape[1:]}")
            labels["nuclei"] = _to_labels(lab, mask)
            sources.append(str(mask.relative_to(root)))
        out.append(Field(path.stem, "all", image, labels, sources))
    stems = {p.stem for p in paths}
    skipped += [
        f"{m}: no image images/{s}.tif" for s, m in sorted(by_stem.items()) if s not in stems
    ]
    return ParseResult(out, skipped)


LAYOUTS: dict[str, Layout] = {
    "bbbc020": Layout(
        "bbbc020",
        ("c1", "c5"),
        {"cells": "c1", "nuclei": "c5"},
        "stratified",
        parse_bbbc020,
        archives=(
            "BBBC020_v1_images.zip",
            "BBBC020_v1_outlines_cells.zip",
            "BBBC020_v1_outlines_nuclei.zip",
        ),
        official_base="https://data.broadinstitute.org/bbbc/BBBC020/",
        sha256={
            "BBBC020_v1_images.zip": (
                "edf4a87be957ec2b7ab268bef92c2efae8e098dc0855a4fa9df80895ff7062e4",
            ),
            "BBBC020_v1_outlines_cells.zip": (
                "6f65b05eb5d5c52829004760a01a93c07863676547605516b6e5fce47f8516d5",
            ),
            # Served today (one object file in it is corrupt), and an older copy without it.
            "BBBC020_v1_outlines_nuclei.zip": (
                "b212f10013ae2a0260976cff2134204ecba226853922aea2ab5289051a47ceb7",
                "c0cd13f721c8891605ea212c18f4747a198349ea87ea324ee00b0212e397f4cd",
            ),
        },
    ),
    "ctc": Layout("ctc", ("fluo",), {"nuclei": "fluo"}, "contiguous", parse_ctc),
    # Plain folders hold one label set, stored and scored as "nuclei" (set data.target=nuclei).
    "folder": Layout("folder", ("ch0",), {"nuclei": "ch0"}, "stratified", parse_folder),
}


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ConfigError(
            f"unknown layout {name!r}; valid layouts: {', '.join(sorted(LAYOUTS))}"
        ) from None
