"""Source kinds for ``data.source``: where raw data comes from, turned into a folder to parse.

    demo                  generate the synthetic BBBC020-layout set under <data_dir>/raw
    broad                 download the layout's official archives (checked against known sums)
    http(s)://base        download <base>/<archive> for each of data.archives (or the layout's);
                          a URL ending in .zip downloads just that archive
    s3://bucket/prefix    archives under the prefix, or else an extracted tree (mirrored locally)
    /path/a.zip           one local archive
    /path/                a folder holding only .zip archives (or the data.archives named), or an
                          extracted dataset folder (parsed in place, never modified)

Archives are verified (sha256, see `pipeline.ingest.download`) before they are extracted safely into
``<data_dir>/raw/extracted/<key>/``; local archives are checked against ``data.sha256``, the
layout's known sums or a ``SHA256SUMS`` file beside them, when one of those lists them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
from pathlib import Path

from pipeline.atomic import publish_dir
from pipeline.config import PipelineConfig
from pipeline.errors import DataError
from pipeline.ingest.demo import DemoSpec, generate_demo
from pipeline.ingest.download import (
    SUMS_FILE,
    cached,
    cached_or_require_sum,
    commit_download,
    download,
    expected_sums,
    fetch_published_sums,
    parse_sums,
    part_path,
)
from pipeline.ingest.extract import entry_target, extract_all
from pipeline.ingest.layouts import Layout, get_layout
from pipeline.io import sha256_file
from pipeline.storage import s3_client, split_s3

log = logging.getLogger(__name__)


def source_kind(source: str, archives_named: bool = False) -> str:
    """demo | broad | http | s3 | archive (one .zip) | archives (folder of .zip) | folder."""
    if re.match(r"https?://", source):
        return "http"
    if source.startswith("s3://"):
        return "s3"
    path = Path(source).expanduser()
    if source in ("demo", "broad") or (path.name in ("demo", "broad") and not path.exists()):
        return path.name  # config.resolve_paths may have anchored the keyword to a folder
    if path.is_file() and path.suffix.lower() == ".zip":
        return "archive"
    if path.is_dir():
        subdirs = any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())
        zips = any(path.glob("*.zip"))
        return "archives" if zips and (archives_named or not subdirs) else "folder"
    raise DataError(
        f"data.source={source!r}: no such file or folder; use demo, broad, an http(s):// base URL, "
        "s3://bucket/prefix, a .zip, a folder of .zip archives or an extracted dataset folder"
    )


def _verify_local(path: Path, expected: frozenset[str]) -> str:
    """sha256 of a local archive (read only), checked against `expected` when any is known."""
    actual = sha256_file(path)
    if expected and actual not in expected:
        raise DataError(
            f"{path.name}: sha256 mismatch for {path}: expected "
            f"{' or '.join(sorted(expected))}, got {actual}; replace the file or set "
            f"data.sha256={path.name}=<its sum> if this copy is intended"
        )
    if not expected:
        log.warning("%s: no expected sha256 known; using it as is (sha256 %s)", path, actual)
    return actual


Archives = list[tuple[Path, str]]  # verified local copies: (path, sha256)


def _local_archives(cfg: PipelineConfig, kind: str, known: list[dict]) -> Archives:
    """One .zip, or the archives of a folder, checked against the known or published sums."""
    d = cfg.data
    src = Path(d.source).expanduser()
    if kind == "archive":
        folder, paths = src.parent, [src]
    else:
        folder = src
        paths = [src / n for n in d.archives] if d.archives else sorted(src.glob("*.zip"))
    if missing := [str(p) for p in paths if not p.is_file()]:
        raise DataError(f"archives not found: {missing}; check data.source and data.archives")
    sums = folder / SUMS_FILE
    published = parse_sums(sums.read_text().splitlines()) if sums.is_file() else {}
    return [(p, _verify_local(p, expected_sums(p.name, *known, published))) for p in paths]


def _s3_archives(cfg: PipelineConfig, cache: Path, known: list[dict]) -> Archives:
    """The archives under an S3 prefix (data.archives, else every top-level .zip)."""
    d = cfg.data
    client, bucket, prefix, objects = s3_list(d.source, d.s3_endpoint_url)
    keys = {o["Key"][len(prefix) :]: o["Key"] for o in objects}
    names = d.archives or [k for k in keys if k.lower().endswith(".zip") and "/" not in k]
    if missing := [n for n in names if n not in keys]:
        raise DataError(f"{d.source}: no objects {missing}; check data.archives")
    published: dict[str, frozenset[str]] = {}
    if SUMS_FILE in keys:
        body = client.get_object(Bucket=bucket, Key=keys[SUMS_FILE])["Body"].read()
        published = parse_sums(body.decode().splitlines())
    paths = [
        s3_download(client, bucket, keys[n], cache, expected_sums(n, *known, published))
        for n in names
    ]
    return [(path, path.parent.name) for path in paths]


def _http_archives(
    cfg: PipelineConfig, layout: Layout, kind: str, cache: Path, known: list[dict]
) -> Archives:
    """The layout's official archives (``broad``), or archives under an http(s) base URL."""
    d = cfg.data
    base = layout.official_base if kind == "broad" else d.source
    names = d.archives or list(layout.archives)
    if kind == "http" and base.lower().endswith(".zip"):  # the URL of one archive
        base, names = base.rsplit("/", 1)[0], [base.rsplit("/", 1)[1]]
    if not base or not names:
        raise DataError(
            f"layout {layout.name!r} has no official archives for source {kind!r}; "
            "set data.archives (and data.source to their base URL)"
        )
    opts = {
        "retries": d.download_retries,
        "backoff_s": d.download_backoff_s,
        "timeout_s": d.download_timeout_s,
        "deadline_s": d.download_deadline_s,
    }
    out, published = [], None
    for name in names:
        url = f"{base.rstrip('/')}/{name}"
        expected = expected_sums(name, *known)
        path = cached(url, cache, expected)
        if path is None:
            if not expected:  # only now ask the server: a cached re-run needs no network
                if published is None:
                    published = fetch_published_sums(base, d.download_timeout_s)
                expected = expected_sums(name, published)
            path = download(url, cache, expected, **opts)
        out.append((path, path.parent.name))
    return out


def fetch_archives(cfg: PipelineConfig, layout: Layout, kind: str) -> Archives:
    """Verified local copies of the source's archives. Expected sums, first match wins:
    ``data.sha256``, the layout's known sums, then a SHA256SUMS published beside them."""
    known = [parse_sums(cfg.data.sha256), {k: frozenset(v) for k, v in layout.sha256.items()}]
    cache = Path(cfg.paths.data_dir) / Path(cfg.data.cache_dir or "raw/downloads").expanduser()
    if kind in ("archive", "archives"):
        return _local_archives(cfg, kind, known)
    if kind == "s3":
        return _s3_archives(cfg, cache, known)
    return _http_archives(cfg, layout, kind, cache, known)


def resolve_source(cfg: PipelineConfig) -> tuple[Path, dict]:
    """The folder to parse for the configured source, and a record of where it came from."""
    d = cfg.data
    layout = get_layout(d.layout)
    kind = source_kind(d.source, bool(d.archives))
    info: dict = {"kind": kind, "location": d.source}
    raw = Path(cfg.paths.data_dir) / "raw"
    if kind == "demo":
        if d.layout != "bbbc020":
            raise DataError(
                f"data.source=demo generates BBBC020 layout, but data.layout={d.layout!r}"
            )
        spec = DemoSpec(d.demo_fields, d.demo_height, d.demo_width, d.demo_seed)
        root = raw / f"bbbc020-demo-s{d.demo_seed}-n{d.demo_fields}"
        return generate_demo(root, spec), info
    if kind == "folder":
        return Path(d.source).expanduser(), info
    if kind == "s3" and not d.archives:
        client, bucket, prefix, objects = s3_list(d.source, d.s3_endpoint_url)
        if not any(o["Key"].lower().endswith(".zip") for o in objects):
            return s3_mirror(client, bucket, prefix, objects, raw / "s3"), info
    archives = fetch_archives(cfg, layout, kind)
    info["archives"] = [{"name": p.name, "path": str(p), "sha256": s} for p, s in archives]
    limits = (int(d.max_extract_gb * 1e9), d.max_expansion_ratio)
    return extract_all(archives, raw / "extracted", limits), info


def s3_list(uri: str, endpoint_url: str | None) -> tuple[object, str, str, list[dict]]:
    """(client, bucket, prefix, objects) for ``s3://bucket/prefix``; DataError if empty."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_s3(uri, "data.source")
    prefix = f"{prefix}/" if prefix else ""
    client = s3_client(endpoint_url)
    objects: list[dict] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            objects += [o for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    except (BotoCoreError, ClientError) as exc:
        raise DataError(
            f"{uri}: cannot list objects ({exc}); check data.source, "
            "data.s3_endpoint_url and the AWS credentials"
        ) from exc
    if not objects:
        raise DataError(f"{uri}: no objects under this prefix; check data.source")
    return client, bucket, prefix, objects


def s3_download(client, bucket: str, key: str, cache: Path, expected: frozenset[str]) -> Path:
    """Fetch one archive object into the download cache, verified like an HTTP download."""
    url = f"s3://{bucket}/{key}"
    if hit := cached_or_require_sum(url, cache, expected, "object next to it"):
        return hit
    part = part_path(url, cache)
    _s3_get(client, bucket, key, part)
    return commit_download(part, url, cache, expected)


def _s3_get(client, bucket: str, key: str, dest: Path) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.download_file(bucket, key, str(dest))
    except (BotoCoreError, ClientError) as exc:
        raise DataError(
            f"s3://{bucket}/{key}: download failed ({exc}); check access and re-run"
        ) from exc


def s3_mirror(client, bucket: str, prefix: str, objects: list[dict], dest_root: Path) -> Path:
    """Copy the extracted tree under the prefix to ``dest_root/<listing hash>/`` (reused)."""
    listing = sorted((o["Key"], o["Size"], o.get("ETag", "")) for o in objects)
    final = dest_root / hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]
    if final.is_dir():
        return final
    dest_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=dest_root))
    try:
        for key, _, _ in listing:
            rel = entry_target(key[len(prefix) :], Path(f"s3://{bucket}/{prefix}"))
            if rel is not None:
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                _s3_get(client, bucket, key, tmp / rel)
        publish_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
