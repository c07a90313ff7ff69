"""Fetch raw archives: streaming HTTP(S) download with resume, retries and checksums.

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
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from pipeline.atomic import disk_full_is_data_error
from pipeline.errors import DataError
from pipeline.io import sha256_file
from pipeline.jsonio import write_json

log = logging.getLogger(__name__)

SUMS_FILE = "SHA256SUMS"
_CHUNK = 1 << 16


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


class _Deadline:
    """The overall time allowed for one file (retries and waits included)."""

    def __init__(self, url: str, part: Path, seconds: float) -> None:
        self.url, self.part, self.seconds = url, part, seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self, have: int) -> None:
        if self.left() <= 0:
            raise DataError(
                f"{self.url}: not downloaded within data.download_deadline_s={self.seconds:g} s "
                f"({have} bytes received; the server is stalled or too slow). Raise the "
                f"deadline or try later; it resumes from {self.part}"
            )


def _fetch_once(url: str, part: Path, timeout: float, deadline: _Deadline) -> None:
    """One attempt: continue `part` from its current size (Range) or start it over."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        wait = max(0.1, min(timeout, deadline.left()))
        resp = urllib.request.urlopen(req, timeout=wait)  # noqa: S310 (http/https only)
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
                    deadline.check(have)
                    try:  # read1: what has arrived (a trickle cannot hold a read forever)
                        chunk = resp.read1(_CHUNK)
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


def _probe(url: str, timeout: float = 30.0) -> None:
    """DataError naming `url` when the server says it does not exist (or cannot be reached);
    fetches at most one byte."""
    req = urllib.request.Request(url, headers={"Range": "bytes=0-0"})
    try:
        urllib.request.urlopen(req, timeout=timeout).close()  # noqa: S310 (http/https only)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403, 404, 410):
            raise DataError(
                f"{url}: HTTP {exc.code} {exc.reason}; check data.source and data.archives "
                "(a mistyped name or URL?)"
            ) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DataError(f"{url}: unreachable ({exc}); check data.source and the network") from exc


def cached_or_require_sum(
    url: str, cache: Path, expected: frozenset[str], where: str
) -> Path | None:
    """The cached copy of `url`, else None when a sum is known to check a fresh download
    against; with no known sum, raise (never fetch unchecked). `where`: where sums may live."""
    if (hit := cached(url, cache, expected)) is not None:
        return hit
    if not expected:
        name = url.rstrip("/").rsplit("/", 1)[-1]
        if url.startswith(("http://", "https://")):
            _probe(url)  # a mistyped URL says 404, not "add a checksum"
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
    deadline_s: float = 3600.0,
) -> Path:
    """Download `url` into the cache (once) and return the verified file.

    Retries transient failures `retries` times, waiting ``backoff_s * 2**attempt`` seconds, and
    resumes from the ``.part`` file; gives up with DataError naming the URL after `deadline_s`
    in all (a server trickling bytes never trips the per-read `timeout_s`). Raises DataError
    naming the file and both sums when the
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
    deadline = _Deadline(url, part, deadline_s)
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, part, timeout_s, deadline)
            break
        except _Retryable as exc:
            if attempt == retries:
                raise DataError(
                    f"{url}: download failed after {retries + 1} attempts ({exc}); "
                    f"check the network and re-run (it resumes from {part})"
                ) from exc
            wait = backoff_s * 2**attempt
            log.warning("%s: %s; retry %d/%d in %.1f s", name, exc, attempt + 1, retries, wait)
            time.sleep(min(wait, max(0.0, deadline.left())))
            deadline.check(part.stat().st_size if part.exists() else 0)
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
