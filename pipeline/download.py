"""Fetch raw archives: streaming HTTP(S) download with resume and checksums; safe zip extraction.

Download cache (``data.cache_dir``, default ``<data_dir>/raw/downloads``)::

    <sha256>/<name>                a verified archive; it only appears after its sum matched
    partial/<url-hash>-<name>.part an interrupted download, resumed with an HTTP Range request
    index.json                     url -> verified sha256, so a re-run needs no network at all

Expected sums, first match wins: ``data.sha256`` entries (``name=hex``), the layout's known sums
(``Layout.sha256``: the official BBBC020 archives, wherever they are served from), then a
``SHA256SUMS`` file published next to the archives (``sha256sum`` format). A remote archive
without any expected sum is refused; the sum is checked before anything is extracted. Archives
are only ever read, never modified.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from pipeline.io import DataError, disk_full_is_data_error, publish_dir, sha256_file, write_json

log = logging.getLogger(__name__)

SUMS_FILE = "SHA256SUMS"
_CHUNK = 1 << 16
_ZEROS = bytes(_CHUNK)


class _Retryable(Exception):
    """A transient failure (dropped connection, 5xx): retried with exponential backoff."""


def parse_sums(lines: Iterable[str]) -> dict[str, frozenset[str]]:
    """``name=hex`` or ``sha256sum`` lines (``hex  name`` / ``hex *name``) -> name -> sums."""
    out: dict[str, set[str]] = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if m := re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line):
            digest, name = m[1], m[2]
        elif m := re.fullmatch(r"([^=]+)=([0-9a-fA-F]{64})", line):
            name, digest = m[1], m[2]
        else:
            raise DataError(f"bad sha256 entry {line!r}; use 'name=<64 hex>' or sha256sum format")
        out.setdefault(Path(name.strip()).name, set()).add(digest.lower())
    return {k: frozenset(v) for k, v in out.items()}


def expected_sums(name: str, *sources: dict[str, frozenset[str]]) -> frozenset[str]:
    """The sums `name` may have: from the first mapping of `sources` that lists it, else empty."""
    return next((frozenset(s[name]) for s in sources if s.get(name)), frozenset())


class _Progress:
    """A rich progress bar on a terminal; otherwise a log line every 25 %."""

    def __init__(self, name: str, total: int | None, done: int) -> None:
        self.name, self.total, self.done, self.bar = name, total, done, None
        self.next_pct = 25
        if sys.stderr.isatty():
            from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

            self.bar = Progress(
                *Progress.get_default_columns(),
                DownloadColumn(),
                TransferSpeedColumn(),
                transient=True,
            )
            self.task = self.bar.add_task(name, total=total, completed=done)
            self.bar.start()

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(self.task, advance=n)
        elif self.total and self.done * 100 >= self.next_pct * self.total:
            log.info("%s: %d%% of %d bytes", self.name, 100 * self.done // self.total, self.total)
            self.next_pct = 100 * self.done // self.total // 25 * 25 + 25

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _fetch_once(url: str, part: Path, timeout: float) -> None:
    """One attempt: continue `part` from its current size (Range) or start it over."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (http/https only)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # the partial file does not fit the remote one: start over
            part.unlink(missing_ok=True)
            raise _Retryable(f"HTTP 416 for a resume at byte {have}") from exc
        if exc.code in (408, 429) or exc.code >= 500:
            raise _Retryable(f"HTTP {exc.code}") from exc
        raise DataError(
            f"{url}: HTTP {exc.code} {exc.reason}; check data.source and data.archives"
        ) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Retryable(str(exc)) from exc
    with resp:
        total = resp.headers.get("Content-Length")
        total = int(total) if total is not None else None
        span = re.match(r"bytes (\d+)-\d+/(\d+)", resp.headers.get("Content-Range", ""))
        if have and resp.status == 206 and span and int(span[1]) == have:
            mode, total = "ab", int(span[2])
            log.info("resuming %s at byte %d of %d", part.name, have, total)
        else:
            mode, have = "wb", 0
        progress = _Progress(part.name.removesuffix(".part"), total, have)
        full = f"{part}: disk full while downloading {url}; free space and re-run (it resumes)"
        try:
            with disk_full_is_data_error(full), open(part, mode) as fh:
                while True:
                    try:
                        chunk = resp.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as exc:
                        raise _Retryable(f"connection lost after {have} bytes: {exc}") from exc
                    if not chunk:
                        break
                    fh.write(chunk)
                    have += len(chunk)
                    progress.update(len(chunk))
        finally:
            progress.close()
    if total is not None and have != total:
        raise _Retryable(f"connection closed after {have} of {total} bytes")


def _load_index(cache: Path) -> dict[str, str]:
    try:
        return json.loads((cache / "index.json").read_text())
    except (OSError, ValueError):
        return {}


def cached(url: str, cache: Path, expected: frozenset[str]) -> Path | None:
    """The verified cached copy of `url` (by expected sum, else by an earlier run's), or None."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    for digest in expected or {_load_index(cache).get(url, "")} - {""}:
        if (hit := cache / digest / name).is_file():
            log.info("%s: cached at %s (sha256 %s), no download", name, hit, digest)
            return hit
    return None


def cached_or_require_sum(
    url: str, cache: Path, expected: frozenset[str], where: str
) -> Path | None:
    """The cached copy of `url`, else None when a sum is known to check a fresh download
    against; with no known sum, raise (never fetch unchecked). `where`: where sums may live."""
    if (hit := cached(url, cache, expected)) is not None:
        return hit
    if not expected:
        name = url.rstrip("/").rsplit("/", 1)[-1]
        raise DataError(
            f"{url}: no expected sha256 for {name}; put a {SUMS_FILE} {where} or set "
            f"data.sha256={name}=<64 hex>"
        )
    return None


def download(
    url: str,
    cache: Path,
    expected: frozenset[str],
    retries: int = 4,
    backoff_s: float = 1.0,
    timeout_s: float = 60.0,
) -> Path:
    """Download `url` into the cache (once) and return the verified file.

    Retries transient failures `retries` times, waiting ``backoff_s * 2**attempt`` seconds, and
    resumes from the ``.part`` file. Raises DataError naming the file and both sums when the
    result matches none of `expected` (the partial file is deleted, nothing enters the cache).
    """
    if retries < 0 or backoff_s < 0 or timeout_s <= 0:
        raise ValueError(
            f"retries={retries}, backoff_s={backoff_s}, timeout_s={timeout_s}: "
            "need retries >= 0, backoff_s >= 0, timeout_s > 0"
        )
    if hit := cached_or_require_sum(url, cache, expected, "file next to the archives"):
        return hit
    name = url.rstrip("/").rsplit("/", 1)[-1]
    part = part_path(url, cache)
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, part, timeout_s)
            break
        except _Retryable as exc:
            if attempt == retries:
                raise DataError(
                    f"{url}: download failed after {retries + 1} attempts ({exc}); "
                    f"check the network and re-run (it resumes from {part})"
                ) from exc
            wait = backoff_s * 2**attempt
            log.warning("%s: %s; retry %d/%d in %.1f s", name, exc, attempt + 1, retries, wait)
            time.sleep(wait)
    return commit_download(part, url, cache, expected)


def commit_download(part: Path, url: str, cache: Path, expected: frozenset[str]) -> Path:
    """Check the finished `part` against `expected`; move it into the cache or delete it."""
    name = part.name.removesuffix(".part").split("-", 1)[1]
    actual = sha256_file(part)
    if actual not in expected:
        part.unlink()
        raise DataError(
            f"{name}: sha256 mismatch for {url}: expected {' or '.join(sorted(expected))}"
            f", got {actual}; the download was deleted. Re-run, or if the archive was "
            f"re-published set data.sha256={name}=<new sum>"
        )
    final = cache / actual / name
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, final)
    write_json(cache / "index.json", {**_load_index(cache), url: actual})
    log.info("%s: downloaded and verified (sha256 %s)", name, actual)
    return final


def part_path(url: str, cache: Path) -> Path:
    name = url.rstrip("/").rsplit("/", 1)[-1]
    part = cache / "partial" / f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    return part


def fetch_published_sums(base: str, timeout_s: float = 60.0) -> dict[str, frozenset[str]]:
    """The ``SHA256SUMS`` file next to the archives at `base` ({} when there is none)."""
    try:
        with urllib.request.urlopen(f"{base.rstrip('/')}/{SUMS_FILE}", timeout=timeout_s) as r:
            return parse_sums(r.read().decode().splitlines())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return {}
        raise DataError(f"{base}/{SUMS_FILE}: HTTP {exc.code}; check data.source") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(f"{base}/{SUMS_FILE}: {exc}; check the network and data.source") from exc


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


def _copy_sparse(src, out) -> None:
    """Copy a stream, seeking over all-zero blocks: mask TIFs (mostly 0) become sparse files."""
    while block := src.read(_CHUNK):
        if block == _ZEROS[: len(block)]:
            out.seek(len(block), os.SEEK_CUR)
        else:
            out.write(block)
    out.truncate()


def safe_extract(archive: Path, target: Path) -> int:
    """Extract zip `archive` into the folder `target`; return the number of entries written.

    Refuses (DataError naming the entry) absolute paths, ``..`` components and symlinks pointing
    outside `target`; skips ``__MACOSX/``, ``._*`` and ``.DS_Store`` junk; checks free space first.
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
        free = shutil.disk_usage(root).free
        if need > free:
            raise DataError(
                f"{archive}: needs {need / 1e9:.2f} GB to extract, {free / 1e9:.2f} GB "
                f"free under {root}; free disk space and re-run"
            )
        written = 0
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
                with zf.open(info) as src, open(dest, "wb") as out:
                    _copy_sparse(src, out)
            written += 1
    return written


def extract_all(archives: list[tuple[Path, str]], dest_root: Path) -> Path:
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
            n = safe_extract(path, tmp)
            log.info("extracted %d entries of %s", n, path.name)
        publish_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
