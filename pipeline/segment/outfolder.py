"""The output folder of `pipeline.segment.batch.segment_folder`: the images it segments, the
``.done/`` claims that make each image segmented once, and images.csv (see batch's docstring
for the layout)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pandas as pd

from pipeline.atomic import atomic_path
from pipeline.conventions import now
from pipeline.errors import DataError
from pipeline.io import IMAGE_SUFFIXES, images_by_name
from pipeline.jsonio import write_json

log = logging.getLogger(__name__)
DONE = ".done"
STALE_CLAIM_S = 3600  # a claim this old with no result: its run died; claim it again


def list_images(images: str | Path) -> list[Path]:
    """The images (`pipeline.io.IMAGE_SUFFIXES`: TIF, PNG, JPEG, BMP) in folder `images`, sorted,
    or `images` itself when it is one image file; DataError when there are none, or when two
    share a name but the suffix (their outputs are named by it)."""
    folder = Path(images)
    kinds = "/".join(s[1:] for s in IMAGE_SUFFIXES)
    if folder.is_file() and folder.suffix.lower() in IMAGE_SUFFIXES:
        return [folder]
    if not folder.is_dir():
        raise DataError(
            f"{images}: no such folder or image file; pass a folder of images or one ({kinds})"
        )
    paths = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not paths:
        raise DataError(f"{images}: no images to segment ({kinds})")
    images_by_name(paths, "one name, two images; their outputs would be one")
    return paths


def claim(out: Path, digest: str, image: Path) -> bool:
    """Create the image's ``.done`` entry if absent (exclusive); False if it exists."""
    (out / DONE).mkdir(parents=True, exist_ok=True)
    entry = out / DONE / f"{digest}.json"
    try:
        fd = os.open(entry, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            done = json.loads(entry.read_text() or "{}")
        except ValueError:  # a claim cut short (a full disk): not a record, which is atomic
            done = {}
        if "segmented_at" in done or time.time() - entry.stat().st_mtime < STALE_CLAIM_S:
            return False
        log.warning("%s: re-segmenting; its claim by a run that died is stale", image)
        fd = os.open(entry, os.O_TRUNC | os.O_WRONLY)
    with os.fdopen(fd, "w") as fh:
        json.dump({"image": image.name, "claimed_at": now()}, fh)
    return True


def record_done(out: Path, digest: str, row: dict) -> Path:
    """The image's ``.done`` entry, its claim replaced by its images.csv `row` (segmented),
    atomically: a claim is never left half-written for `claim` to misread."""
    return write_json(out / DONE / f"{digest}.json", row)


def read_table(out: Path) -> pd.DataFrame | None:
    """The folder's images.csv (None before the first run); DataError naming it when it cannot
    be read or has no ``image`` column, so a run stops before it segments anything."""
    path = out / "images.csv"
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as err:  # pandas' parser and empty-file errors
        table, why = None, f"{type(err).__name__}: {str(err).strip()[:200]}"
    else:
        why = "" if "image" in table.columns else f"no 'image' column in {list(table.columns)}"
    if why:
        raise DataError(
            f"{path}: unreadable images.csv ({why}); move it aside and run again (a new one "
            "lists the images segmented from then on; their label images and overlays stay)"
        )
    return table


def update_table(out: Path, rows: list[dict]) -> Path:
    """images.csv: earlier rows (other images) kept, this call's rows added or replaced."""
    path = out / "images.csv"
    table = pd.DataFrame(rows, columns=None if rows else ["image"])
    old = read_table(out)
    if old is not None:
        parts = [t for t in (old[~old["image"].isin(table["image"])], table) if len(t)]
        if parts:  # empty frames left out: a concat with one makes the counts floats
            table = pd.concat(parts, ignore_index=True)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return path
