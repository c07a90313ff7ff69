"""Types shared by the layout parsers: a parsed field, a parse result, and the overlap rule that
merges per-object masks into one instance label image (0 = background)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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
