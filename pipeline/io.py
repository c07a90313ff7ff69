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
    _remove_orphans(final)
    prefix = f".{final.name}.{os.getpid()}."  # the owner's pid: orphans can be recognised
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=final.parent))
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


def _remove_orphans(final: Path) -> None:
    """Delete temporaries of `final` left by processes that died (killed while writing)."""
    for tmp in final.parent.glob(f".{glob.escape(final.name)}.*.tmp"):
        pid = tmp.name[len(final.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def public_dir(path: Path) -> Path:
    """Give a folder made by ``mkdtemp`` (0700) the user's default permissions (umask), so
    another user (a model server) can read what is published from it."""
    mask = os.umask(0)
    os.umask(mask)
    path.chmod(0o777 & ~mask)
    return path


@contextlib.contextmanager
def disk_full_is_data_error(message: str) -> Iterator[None]:
    """Turn "no space left" inside the block into DataError(`message`): ENOSPC / EDQUOT, and
    the stream errors C++ writers (torch.save's PytorchStreamWriter) raise instead."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(message) from exc
        raise
    except RuntimeError as exc:
        text = str(exc).lower()
        if "iostream" in text or "failed writing" in text or "unexpected pos" in text:
            raise DataError(f"{message} ({str(exc).splitlines()[0][:120]})") from exc
        raise


def publish_dir(tmp: Path, final: Path) -> None:
    """Rename a complete temporary folder to its content-addressed name `final`. Folders only
    appear at `final` by this rename, so if a concurrent run got there first, its folder is
    complete and identical: keep it (the caller removes `tmp`)."""
    try:
        public_dir(tmp).rename(final)
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
        arr = tifffile.imread(path)
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise DataError(
            f"{path}: not a readable TIF ({type(exc).__name__}: {exc}); "
            "re-download or remove the file"
        ) from exc
    if not isinstance(arr, np.ndarray) or arr.size == 0 or arr.dtype.kind not in "biuf":
        kind = getattr(arr, "dtype", type(arr).__name__)
        raise DataError(
            f"{path}: not a readable TIF: no pixel data (shape {getattr(arr, 'shape', '?')}, "
            f"{kind}); re-export or remove the file"
        )
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise DataError(
            f"{path}: {bad} NaN or infinite pixel(s); replace them (e.g. with 0) or remove the file"
        )
    return arr


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
