"""Safe zip extraction of verified archives into a folder keyed by their checksums.

Refused (DataError naming the entry): absolute paths, ``..`` components and symlinks pointing
outside the target. Skipped: ``__MACOSX/``, ``._*`` and ``.DS_Store`` junk. Free space is
checked first; all-zero blocks are written sparse (mask TIFs are mostly 0).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from pipeline.atomic import publish_dir
from pipeline.errors import DataError

log = logging.getLogger(__name__)

_CHUNK = 1 << 16
_ZEROS = bytes(_CHUNK)


def entry_target(name: str, archive: Path) -> PurePosixPath | None:
    """The relative path an entry may be written to; None for junk; DataError for hostile names."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        raise DataError(f"{archive}: refusing entry {name!r}: absolute path")
    parts = PurePosixPath(posix).parts
    if ".." in parts:
        raise DataError(f"{archive}: refusing entry {name!r}: '..' component escapes the target")
    if (
        not parts
        or parts[0] == "__MACOSX"
        or parts[-1].startswith("._")
        or parts[-1] == ".DS_Store"
    ):
        return None
    return PurePosixPath(*parts)


def _copy_sparse(src, out, budget: int) -> int:
    """Copy a stream, seeking over all-zero blocks (mask TIFs, mostly 0, become sparse files);
    returns the bytes copied, stopping with -1 once more than `budget` would be written."""
    done = 0
    while block := src.read(_CHUNK):
        done += len(block)
        if done > budget:
            return -1
        if block == _ZEROS[: len(block)]:
            out.seek(len(block), os.SEEK_CUR)
        else:
            out.write(block)
    out.truncate()
    return done


def _too_big(archive: Path, size: int, limits: tuple[int, float]) -> str | None:
    max_bytes, max_ratio = limits
    packed = max(archive.stat().st_size, 1)
    if size > max_bytes:
        return f"expands to over {size / 1e9:.2f} GB, more than data.max_extract_gb"
    if size / packed > max_ratio:
        return (
            f"expands {size / packed:.0f}x ({size / 1e9:.2f} GB from {packed / 1e6:.1f} MB), "
            f"more than data.max_expansion_ratio={max_ratio:g} (a zip bomb?)"
        )
    return None


def safe_extract(
    archive: Path, target: Path, limits: tuple[int, float] = (50 * 10**9, 1000.0)
) -> int:
    """Extract zip `archive` into the folder `target`; return the number of entries written.

    Refuses (DataError naming the entry) absolute paths, ``..`` components and symlinks pointing
    outside `target`; skips ``__MACOSX/``, ``._*`` and ``.DS_Store`` junk; checks free space first.
    `limits` (max bytes, max expansion ratio) stop a zip bomb, on the declared sizes first and
    on the bytes actually written; corrupt entries stop with DataError naming them.
    """
    root = target.resolve()
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(
            f"{archive}: not a readable zip ({exc}); delete it and re-download"
        ) from exc
    with zf:
        infos = [(i, entry_target(i.filename, archive)) for i in zf.infolist()]
        need = sum(i.file_size for i, rel in infos if rel is not None)
        if reason := _too_big(archive, need, limits):
            raise DataError(f"{archive}: {reason}; not extracted. Raise the limit if it is real")
        free = shutil.disk_usage(root).free
        if need > free:
            raise DataError(
                f"{archive}: needs {need / 1e9:.2f} GB to extract, {free / 1e9:.2f} GB "
                f"free under {root}; free disk space and re-run"
            )
        written = total = 0
        for info, rel in infos:
            if rel is None:
                continue
            dest = root.joinpath(*rel.parts)
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.parent.resolve().is_relative_to(root):
                raise DataError(
                    f"{archive}: refusing entry {info.filename!r}: its folder leads "
                    "outside the target through a link"
                )
            if dest.is_symlink():
                dest.unlink()
            if stat.S_ISLNK(info.external_attr >> 16):
                link = zf.read(info).decode()
                resolved = Path(os.path.normpath(dest.parent.resolve() / link))
                os.symlink(link, dest)
                if link.startswith("/") or not (
                    resolved.is_relative_to(root) and dest.resolve().is_relative_to(root)
                ):
                    dest.unlink()
                    raise DataError(
                        f"{archive}: refusing entry {info.filename!r}: link to "
                        f"{link!r} points outside the target"
                    )
            else:
                try:
                    with zf.open(info) as src, open(dest, "wb") as out:
                        copied = _copy_sparse(src, out, limits[0] - total)
                except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                    raise DataError(
                        f"{archive}: entry {info.filename!r} is corrupt ({exc}); delete the "
                        "archive and download it again"
                    ) from exc
                total += max(copied, 0)
                if copied < 0 or (reason := _too_big(archive, total, limits)):
                    raise DataError(
                        f"{archive}: {reason or 'expands past data.max_extract_gb'} while "
                        f"extracting {info.filename!r} (sizes in the zip are false); stopped"
                    )
            written += 1
    return written


def extract_all(
    archives: list[tuple[Path, str]],
    dest_root: Path,
    limits: tuple[int, float] = (50 * 10**9, 1000.0),
) -> Path:
    """Extract (archive, sha256) pairs together into ``dest_root/<key>/`` (reused if present).

    The folder is keyed by the archives' sums and written under a temporary name, then renamed,
    so an interrupted extraction never leaves a folder that looks complete.
    """
    if not archives:
        raise DataError("no archives to extract; check data.source and data.archives")
    key = hashlib.sha256(json.dumps(sorted(s for _, s in archives)).encode()).hexdigest()[:16]
    final = dest_root / key
    if final.is_dir():
        log.info("archives already extracted at %s", final)
        return final
    dest_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=dest_root))
    try:
        for path, _ in archives:
            n = safe_extract(path, tmp, limits)
            log.info("extracted %d entries of %s", n, path.name)
        publish_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
