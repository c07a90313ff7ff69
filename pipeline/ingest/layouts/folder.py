"""Plain-folder layout: ``images/<stem>.<ext>`` paired with ``masks/<stem>.<ext>`` (TIF, PNG,
JPEG, BMP)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.colour import colour_intensity
from pipeline.errors import DataError
from pipeline.ingest.layouts.base import Field, ParseResult
from pipeline.io import (
    IMAGE_SUFFIXES,
    LOSSY_SUFFIXES,
    binary_to_instances,
    images_by_name,
    read_image,
)


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


def _by_stem(folder: Path) -> dict[str, Path]:
    """The images (`IMAGE_SUFFIXES`) in `folder` by name without suffix; DataError when two
    share one (the field is named by it)."""
    paths = folder.iterdir() if folder.is_dir() else []
    images = [p for p in paths if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return images_by_name(images, "one field name, two files")


def parse_folder(root: Path) -> ParseResult:
    """Plain folders: ``images/<stem>.<ext>`` paired with ``masks/<stem>.<ext>`` (instance or
    binary), ext one of `IMAGE_SUFFIXES` (TIF, PNG, JPEG, BMP; masks not in lossy JPEG).

    Images are (H, W), (H, W, 1-2) single-channel, or colour (H, W, 3-4) taken as their
    intensity (`colour_intensity`: the largest of R, G and B) -> (1, H, W); masks become
    ``nuclei`` uint16 labels (binary masks: one label per connected component); images without
    a mask are unlabelled; masks without an image are reported as skipped.
    """
    images, masks = root / "images", root / "masks"
    if not images.is_dir():
        raise DataError(f"{root}: no images/ folder; a plain dataset needs images/ and masks/")
    by_stem = _by_stem(masks)
    out, skipped = [], []
    for stem, path in sorted(_by_stem(images).items()):
        image = colour_intensity(read_image(path), path)
        if image.ndim == 3 and image.shape[-1] <= 4:
            image = np.moveaxis(image, -1, 0)
        elif image.ndim == 2:
            image = image[None]
        if image.ndim != 3 or image.shape[0] != 1:
            raise DataError(
                f"{path}: plain layout expects single-channel images, got {image.shape}"
            )
        labels, sources = {}, [str(path.relative_to(root))]
        if (mask := by_stem.get(stem)) is not None:
            if mask.suffix.lower() in LOSSY_SUFFIXES:
                raise DataError(
                    f"{mask}: a mask in lossy JPEG (its edges and labels are not kept); "
                    "export masks as PNG or TIF"
                )
            lab = read_image(mask)
            if lab.shape != image.shape[1:]:
                raise DataError(f"{mask}: shape {lab.shape} != image shape {image.shape[1:]}")
            labels["nuclei"] = _to_labels(lab, mask)
            sources.append(str(mask.relative_to(root)))
        out.append(Field(stem, "all", image, labels, sources))
    stems = {f.field_id for f in out}
    skipped += [f"{m}: no image images/{s}.*" for s, m in sorted(by_stem.items()) if s not in stems]
    for folder in (images, masks):  # anything else there is listed, never silently ignored
        others = sorted(
            p for p in folder.glob("*") if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES
        )
        skipped += [f"{p}: not an image; ignored" for p in others if not p.name.startswith(".")]
    return ParseResult(out, skipped)
