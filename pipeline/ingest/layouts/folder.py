"""Plain-folder layout: ``images/<stem>.tif`` paired with ``masks/<stem>.tif``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import DataError
from pipeline.ingest.layouts.base import Field, ParseResult
from pipeline.io import binary_to_instances, read_tif


def _to_labels(lab: np.ndarray, path: Path) -> np.ndarray:
    """A mask image -> (H, W) uint16 instance labels: binary masks (0 and one value, e.g. 0/255)
    are split into 8-connected components; instance masks are kept as they are."""
    if lab.ndim != 2:
        raise DataError(f"{path}: expected a 2-D mask, got shape {lab.shape}")
    if lab.min() < 0 or lab.max() >= 2**16:
        raise DataError(f"{path}: labels {lab.min()}..{lab.max()} do not fit uint16")
    labels = binary_to_instances(lab)
    if labels.max() >= 2**16:
        raise DataError(f"{path}: {labels.max()} objects do not fit uint16 labels")
    return labels.astype(np.uint16)


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
    for folder in (images, masks):  # anything else there is listed, never silently ignored
        others = sorted(
            p for p in folder.glob("*") if p.is_file() and p.suffix.lower() not in (".tif", ".tiff")
        )
        skipped += [f"{p}: not a .tif image; ignored" for p in others if not p.name.startswith(".")]
    return ParseResult(out, skipped)
