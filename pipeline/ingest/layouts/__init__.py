"""Dataset layouts: each turns a folder on disk into fields of image + instance-label arrays.

A layout is one entry in `LAYOUTS`; `get_layout(name)` raises with the valid names. Parsers
(``bbbc020``, ``ctc``, ``folder`` modules) are imported only when a layout parses, so this
registry is cheap to import (the CLI and the Airflow trigger form list its names). Every parser
yields `base.Field` records:

- ``image``: (C, H, W) array of raw intensities (uint8 or uint16), channels named by
  ``Layout.channels``;
- ``labels``: ``{"cells": (H, W) uint16, "nuclei": ...}`` instance label images, 0 = background,
  1..N = objects; only the label sets the field has (empty for unlabelled fields);
- ``group``: the stratum used for splitting (BBBC020 condition/time point, CTC sequence).

Overlap rule (BBBC020 cells overlap): see `base.OVERLAP_RULE`.

A layout may also name the archives it is published as (``archives``, fetched from
``official_base`` for ``data.source: broad``) with their known sha256 sums.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import ConfigError, DataError

if TYPE_CHECKING:
    from pipeline.ingest.layouts.base import ParseResult


@dataclass(frozen=True)
class Layout:
    name: str
    channels: tuple[str, ...]
    target_channel: dict[str, str]  # label set -> channel a single-channel method should use
    split: str  # "stratified" (by group) or "contiguous" (blocks of frames per group)
    parser: str  # "module:function" turning a folder into a ParseResult
    archives: tuple[str, ...] = ()  # default archive names for a URL / S3 / "broad" source
    official_base: str = ""  # where `source: broad` downloads `archives` from
    sha256: dict[str, tuple[str, ...]] = field(default_factory=dict)  # archive -> known sums

    def parse(self, root: Path) -> ParseResult:
        module, func = self.parser.split(":")
        return getattr(importlib.import_module(module), func)(root)

    def check_target(self, target: str) -> None:
        """DataError unless this layout holds the label set `target`."""
        if target not in self.target_channel:
            raise DataError(
                f"data.target={target!r} is not available in layout {self.name!r}; "
                f"choose one of {', '.join(self.target_channel)}"
            )


LAYOUTS: dict[str, Layout] = {
    "bbbc020": Layout(
        "bbbc020",
        ("c1", "c5"),
        {"cells": "c1", "nuclei": "c5"},
        "stratified",
        "pipeline.ingest.layouts.bbbc020:parse_bbbc020",
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
    "ctc": Layout(
        "ctc", ("fluo",), {"nuclei": "fluo"}, "contiguous", "pipeline.ingest.layouts.ctc:parse_ctc"
    ),
    # Plain folders hold one label set, stored and scored as "nuclei" (set data.target=nuclei).
    "folder": Layout(
        "folder",
        ("ch0",),
        {"nuclei": "ch0"},
        "stratified",
        "pipeline.ingest.layouts.folder:parse_folder",
    ),
}


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ConfigError(
            f"unknown layout {name!r}; valid layouts: {', '.join(sorted(LAYOUTS))}"
        ) from None


def method_channel(layout: str, target: str, override: str | None, channels: list[str]) -> str:
    """The channel a single-channel method (a threshold, the watershed, the report's pictures)
    reads: `override` (``baseline.channel``) if set, else the layout's channel for `target`; it
    must be one of the prepared `channels`."""
    known = LAYOUTS.get(layout)
    name = override or (known.target_channel.get(target, "") if known else "")
    if name not in channels:
        raise ConfigError(
            f"baseline.channel={name!r} is not among the prepared channels {channels}; "
            f"set baseline.channel to one of them"
        )
    return name
