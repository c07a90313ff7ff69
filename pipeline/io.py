"""Small file helpers shared by the stages: atomic writes, TIF reads with clear errors, hashes."""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from pipeline.errors import DataError


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `final`; move it into place only if the block succeeds.

    Works for files and folders. A file is replaced in one rename, so readers see the old or the
    new content, never a half-written one. A folder is swapped in two renames: a crash between
    them leaves the previous version aside in this call's temporary folder, and the next
    `atomic_path` on the same path puts it back before doing anything else.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _restore_previous(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    target = tmp / final.name
    try:
        yield target
        if final.is_dir() and target.is_dir():
            final.rename(tmp / "previous")
            target.rename(final)
        else:
            os.replace(target, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _restore_previous(final: Path) -> None:
    """Put back a folder version left aside by a crash in the middle of a folder swap."""
    if final.exists():
        return
    for previous in sorted(final.parent.glob(f".{glob.escape(final.name)}.*.tmp/previous")):
        previous.rename(final)
        return


@contextlib.contextmanager
def disk_full_is_data_error(message: str) -> Iterator[None]:
    """Turn "no space left" (ENOSPC, EDQUOT) inside the block into DataError(`message`)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(message) from exc
        raise


def publish_dir(tmp: Path, final: Path) -> None:
    """Rename a complete temporary folder to its content-addressed name `final`. Folders only
    appear at `final` by this rename, so if a concurrent run got there first, its folder is
    complete and identical: keep it (the caller removes `tmp`)."""
    try:
        tmp.rename(final)
    except OSError:
        if not final.is_dir():
            raise


def write_json(path: str | Path, obj: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    return Path(path)


def write_tif(path: str | Path, array: np.ndarray, **kwargs: Any) -> Path:
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, **kwargs)
    return Path(path)


def binary_to_instances(mask: np.ndarray) -> np.ndarray:
    """An (H, W) mask with values {0, v} (a binary mask, e.g. 0/255) -> int64 labels of its
    8-connected components; any other image is taken as instance labels and returned as int64."""
    values = np.unique(mask)
    if len(values) == 2 and values[0] == 0:
        from skimage.measure import label

        return label(mask > 0, connectivity=2).astype(np.int64)
    return mask.astype(np.int64)


def write_labels(path: str | Path, labels: np.ndarray) -> Path:
    """Write an (H, W) instance label image (0 = background) as uint16, or uint32 when the ids
    do not fit, so no id ever wraps."""
    if labels.size and labels.min() < 0:
        raise ValueError(f"{path}: negative label {labels.min()}; labels are 0 (background)..N")
    big = labels.size and labels.max() > np.iinfo(np.uint16).max
    return write_tif(path, labels.astype(np.uint32 if big else np.uint16))


def read_tif(path: str | Path) -> np.ndarray:
    """Read a TIF, raising DataError (naming the file) when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the dataset folder or re-run ingest")
    try:
        return tifffile.imread(path)
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise DataError(
            f"{path}: not a readable TIF ({type(exc).__name__}: {exc}); "
            "re-download or remove the file"
        ) from exc


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_array(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()
