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

from pipeline.config import ConfigError
from pipeline.layouts.base import (
    OVERLAP_RULE,
    Field,
    Layout,
    ParseResult,
    merge_objects,
    overlap_stats,
)
from pipeline.layouts.bbbc020 import parse_bbbc020
from pipeline.layouts.ctc import parse_ctc
from pipeline.layouts.folder import parse_folder

__all__ = [
    "LAYOUTS",
    "OVERLAP_RULE",
    "Field",
    "Layout",
    "ParseResult",
    "get_layout",
    "method_channel",
    "merge_objects",
    "overlap_stats",
    "parse_bbbc020",
    "parse_ctc",
    "parse_folder",
]

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


def method_channel(layout: str, target: str, override: str | None, channels: list[str]) -> str:
    """The channel a single-channel method (or the watershed) reads: `override`
    (``baseline.channel``) if set, else the layout's channel for `target`; it must be one of the
    prepared `channels`."""
    name = override or get_layout(layout).target_channel.get(target, "")
    if name not in channels:
        raise ConfigError(
            f"baseline.channel={name!r} is not among the prepared channels {channels}; "
            f"set baseline.channel to one of them"
        )
    return name
