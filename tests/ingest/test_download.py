"""Downloads against a real HTTP server on 127.0.0.1: checksums, resume, cache, safe extraction."""

from __future__ import annotations

import collections
import os
import re
import shutil
import stat
import time
import zipfile
from pathlib import Path

import pytest

from pipeline.errors import DataError
from pipeline.ingest.dataset import ingest
from pipeline.ingest.download import download, parse_sums
from pipeline.ingest.extract import safe_extract
from pipeline.ingest.layouts import LAYOUTS
from pipeline.ingest.manifest import load_manifest
from pipeline.io import sha256_file
from tests.archive_server import ArchiveServer, sha256, zip_bbbc020
from tests.conftest import make_cfg

REAL_NUCLEI = "bbbc020/BBBC020_v1_outlines_nuclei.zip"


@pytest.fixture(scope="module")
def demo_archives(demo_root, tmp_path_factory) -> dict[str, bytes]:
    """The three BBBC020 archives built from the session's tiny demo set: name -> bytes."""
    paths = zip_bbbc020(demo_root, tmp_path_factory.mktemp("zips"))
    return {name: p.read_bytes() for name, p in paths.items()}


PUB_NAMES = {
    "BBBC020_v1_images.zip": "demo-images.zip",
    "BBBC020_v1_outlines_cells.zip": "demo-cells.zip",
    "BBBC020_v1_outlines_nuclei.zip": "demo-nuclei.zip",
}


@pytest.fixture
def server(demo_archives):
    """Fresh server per test: /demo/<official name> and, under other names (which have no
    built-in sums), /pub/<name> with a SHA256SUMS file beside them."""
    srv = ArchiveServer()
    for name, data in demo_archives.items():
        srv.files[f"/demo/{name}"] = data
        srv.files[f"/pub/{PUB_NAMES[name]}"] = data
    srv.files["/pub/SHA256SUMS"] = "".join(
        f"{sha256(d)}  {PUB_NAMES[n]}\n" for n, d in demo_archives.items()
    ).encode()
    yield srv
    srv.close()


def _sums(archives: dict[str, bytes]) -> list[str]:
    return [f"{name}={sha256(data)}" for name, data in archives.items()]


def _http_cfg(tmp_path: Path, base: str, **extra):
    return make_cfg(
        tmp_path,
        **{"data.source": base, "data.download_backoff_s": 0.01, "data.download_timeout_s": 10},
        **extra,
    )


def test_fresh_download_checks_sums_and_matches_direct_ingest(
    tmp_path, server, demo_archives, tiny_cfg
):
    cfg = _http_cfg(tmp_path, f"{server.url}/demo", **{"data.sha256": _sums(demo_archives)})
    ref = ingest(cfg)
    cache = tmp_path / "data/raw/downloads"
    for name, data in demo_archives.items():
        assert [r["status"] for r in server.hits(f"/demo/{name}")] == [200]
        assert (cache / sha256(data) / name).read_bytes() == data
    assert not list((cache / "partial").iterdir())
    # Downloaded + extracted archives give exactly the dataset of the extracted demo folder.
    assert ref.dataset_id == ingest(tiny_cfg).dataset_id
    n_requests = len(server.requests)
    assert ingest(cfg).dataset_id == ref.dataset_id and len(server.requests) == n_requests
    _, meta = load_manifest(ref.uri)
    assert meta["source_info"]["kind"] == "http"
    assert {a["sha256"] for a in meta["source_info"]["archives"]} == {
        sha256(d) for d in demo_archives.values()
    }


def test_second_run_downloads_nothing(tmp_path, server, demo_archives):
    cfg = _http_cfg(tmp_path, f"{server.url}/pub", **{"data.archives": list(PUB_NAMES.values())})
    first = ingest(cfg)  # expected sums come from the served SHA256SUMS
    n_requests = len(server.requests)
    assert n_requests == 4  # SHA256SUMS + three archives
    assert ingest(cfg).dataset_id == first.dataset_id
    assert len(server.requests) == n_requests  # cache hit: no request at all, not even the sums


def test_checksum_mismatch_is_clear_and_caches_nothing(tmp_path, server, demo_archives):
    name = "BBBC020_v1_outlines_cells.zip"
    wrong = "0" * 64
    sums = [s if not s.startswith(name) else f"{name}={wrong}" for s in _sums(demo_archives)]
    cfg = _http_cfg(tmp_path, f"{server.url}/demo", **{"data.sha256": sums})
    with pytest.raises(DataError) as err:
        ingest(cfg)
    msg = str(err.value)
    assert name in msg and wrong in msg and sha256(demo_archives[name]) in msg
    cache = tmp_path / "data/raw/downloads"
    assert not list(cache.rglob(f"*{name}*"))  # neither a cached copy nor a .part
    assert not (cache / wrong).exists()
    assert not (tmp_path / "data/raw/extracted").exists()  # nothing was extracted
    assert not (tmp_path / "data/datasets").exists()


def test_dropped_connection_resumes_with_range(tmp_path, server, demo_archives):
    name = "BBBC020_v1_images.zip"
    path = f"/demo/{name}"
    server.drop_once.add(path)
    data = demo_archives[name]
    got = download(
        f"{server.url}{path}", tmp_path / "cache", frozenset({sha256(data)}), backoff_s=0.01
    )
    assert got.read_bytes() == data
    hits = server.hits(path)
    assert [h["status"] for h in hits] == [200, 206]
    assert hits[0]["range"] is None and 0 < hits[0]["sent"] < len(data)
    assert hits[1]["range"] == f"bytes={hits[0]['sent']}-"  # resumed, not restarted
    assert sum(h["sent"] for h in hits) == len(data) < 2 * len(data)


def test_transient_errors_are_retried_then_reported(tmp_path, server, demo_archives):
    name = "BBBC020_v1_outlines_nuclei.zip"
    path, data = f"/demo/{name}", demo_archives[name]
    server.fail_times[path] = 2
    got = download(
        f"{server.url}{path}", tmp_path / "c1", frozenset({sha256(data)}), retries=2, backoff_s=0.01
    )
    assert sha256_file(got) == sha256(data)
    assert [h["status"] for h in server.hits(path)] == [503, 503, 200]
    server.fail_times[path] = 5
    with pytest.raises(DataError, match=r"failed after 2 attempts .*HTTP 503"):
        download(
            f"{server.url}{path}",
            tmp_path / "c2",
            frozenset({sha256(data)}),
            retries=1,
            backoff_s=0.01,
        )
    with pytest.raises(DataError, match="HTTP 404"):
        download(f"{server.url}/demo/missing.zip", tmp_path / "c3", frozenset({"a" * 64}))


def test_a_trickling_server_fails_within_the_deadline_naming_the_url(
    tmp_path, server, demo_archives
):
    name = "BBBC020_v1_outlines_nuclei.zip"
    path, data = f"/slow/{name}", demo_archives[name]
    server.files[path], server.trickle[path] = data, 0.5  # a byte every 0.5 s: never a timeout
    start = time.monotonic()
    with pytest.raises(
        DataError,
        match=rf"{server.url}{path}: not downloaded within "
        r"data.download_deadline_s=3 s \(\d+ bytes received",
    ):
        download(
            f"{server.url}{path}",
            tmp_path / "c",
            frozenset({sha256(data)}),
            timeout_s=60,
            deadline_s=3,
        )
    assert time.monotonic() - start < 8
    assert not list((tmp_path / "c").rglob(name))  # nothing half-downloaded entered the cache


def test_remote_archive_without_any_sum_is_refused(tmp_path, server):
    server.files["/plain/demo-images.zip"] = server.files["/pub/demo-images.zip"]
    with pytest.raises(DataError, match="no expected sha256 for demo-images.zip"):
        ingest(_http_cfg(tmp_path, f"{server.url}/plain", **{"data.archives": "demo-images.zip"}))
    # SHA256SUMS (404), then a one-byte probe that the archive exists; never a download
    assert [(r["path"], r["range"]) for r in server.requests] == [
        ("/plain/SHA256SUMS", None),
        ("/plain/demo-images.zip", "bytes=0-0"),
    ]
    assert not list((tmp_path / "data").rglob("demo-images.zip"))


def test_official_name_with_other_content_fails_the_builtin_sum(tmp_path, server):
    """Sums are never skipped for official archives: a mirror serving other bytes is refused
    (the source here is the URL of one archive)."""
    with pytest.raises(DataError, match="sha256 mismatch.*expected edf4a87be957"):
        ingest(_http_cfg(tmp_path, f"{server.url}/demo/BBBC020_v1_images.zip"))


def test_official_archives_carry_known_sums():
    layout = LAYOUTS["bbbc020"]
    assert layout.official_base == "https://data.broadinstitute.org/bbbc/BBBC020/"
    assert set(layout.sha256) == set(layout.archives)
    assert (
        "b212f10013ae2a0260976cff2134204ecba226853922aea2ab5289051a47ceb7"
        in layout.sha256["BBBC020_v1_outlines_nuclei.zip"]
    )
    assert parse_sums(["a.zip=" + "A" * 64, f"{'b' * 64} *dir/b.zip"]) == {
        "a.zip": frozenset({"a" * 64}),
        "b.zip": frozenset({"b" * 64}),
    }


def test_real_nuclei_archive_over_http(tmp_path, shared_data):
    """The real archive, verified against the sum built into the code, parses to 700 nuclei."""
    data = (shared_data / REAL_NUCLEI).read_bytes()
    srv = ArchiveServer()
    srv.files["/bbbc/BBBC020_v1_outlines_nuclei.zip"] = data
    try:
        cfg = _http_cfg(
            tmp_path,
            f"{srv.url}/bbbc",
            **{"data.archives": "BBBC020_v1_outlines_nuclei.zip", "data.target": "nuclei"},
        )
        ref = ingest(cfg)
    finally:
        srv.close()
    assert [r["path"] for r in srv.requests] == ["/bbbc/BBBC020_v1_outlines_nuclei.zip"]
    manifest, meta = load_manifest(ref.uri)
    expected = collections.Counter(
        re.match(r".*/(.+)_c5_\d+\.TIF$", n)[1]
        for n in zipfile.ZipFile(shared_data / REAL_NUCLEI).namelist()
        if n.endswith(".TIF")
    )
    assert (ref.n_fields, ref.n_labelled, ref.n_skipped_files) == (20, 20, 0)
    assert dict(zip(manifest["field_id"], manifest["n_nuclei"], strict=True)) == dict(expected)
    assert manifest["n_nuclei"].sum() == 700
    assert (manifest["image_path"] == "").all() and (manifest["n_channels"] == 0).all()
    assert set(zip(manifest["height"], manifest["width"], strict=True)) == {(1040, 1388)}
    assert meta["source_info"]["archives"][0]["sha256"] == sha256(data)


# --- safe extraction ------------------------------------------------------------------------


def _zip(path: Path, entries: list[tuple[str, bytes, bool]]) -> Path:
    """Write a zip of (name, data, is_symlink) entries; symlinks carry their target as data."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, link in entries:
            info = zipfile.ZipInfo(name)
            if link:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, data)
    return path


@pytest.mark.parametrize(
    ("entry", "link", "reason"),
    [
        ("/etc/cellseg-evil", None, "absolute path"),
        ("C:/evil.TIF", None, "absolute path"),
        ("../evil.TIF", None, "'..' component"),
        ("BBC020_v1_outlines_nuclei/../../evil.TIF", None, "'..' component"),
        ("BBC020_v1_outlines_nuclei/escape", "../../outside", "points outside"),
        ("BBC020_v1_outlines_nuclei/abs", "/etc/passwd", "points outside"),
    ],
)
def test_hostile_entries_are_rejected_by_name(tmp_path, entry, link, reason):
    archive = _zip(
        tmp_path / "bad.zip",
        [
            ("BBC020_v1_outlines_nuclei/ok_c5_0.TIF", b"x", False),
            (entry, (link or "evil").encode(), link is not None),
        ],
    )
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(DataError, match=re.escape(repr(entry)) + ".*" + re.escape(reason)):
        safe_extract(archive, target)
    assert not (tmp_path / "evil.TIF").exists() and not (tmp_path.parent / "evil.TIF").exists()
    assert not [p for p in target.rglob("*") if p.is_symlink()]


def test_hostile_archive_over_http_leaves_no_extraction(tmp_path):
    archive = _zip(
        tmp_path / "BBBC020_v1_outlines_nuclei.zip",
        [
            ("BBC020_v1_outlines_nuclei/jw-1h 1_c5_0.TIF", b"x", False),
            ("../../../tmp/pwned.TIF", b"evil", False),
        ],
    )
    srv = ArchiveServer()
    srv.files["/x/BBBC020_v1_outlines_nuclei.zip"] = archive.read_bytes()
    try:
        cfg = _http_cfg(
            tmp_path / "run",
            f"{srv.url}/x",
            **{
                "data.archives": "BBBC020_v1_outlines_nuclei.zip",
                "data.sha256": f"BBBC020_v1_outlines_nuclei.zip={sha256_file(archive)}",
            },
        )
        with pytest.raises(DataError, match=re.escape("'../../../tmp/pwned.TIF'")):
            ingest(cfg)
    finally:
        srv.close()
    extracted = tmp_path / "run/data/raw/extracted"
    assert not list(extracted.iterdir())  # temporary folder removed, no final folder
    assert archive.read_bytes() == srv.files["/x/BBBC020_v1_outlines_nuclei.zip"]


def test_junk_is_skipped_and_inner_links_kept(tmp_path):
    archive = _zip(
        tmp_path / "a.zip",
        [
            ("__MACOSX/BBC020_v1_outlines_nuclei/._a_c5_0.TIF", b"junk", False),
            ("BBC020_v1_outlines_nuclei/._a_c5_0.TIF", b"junk", False),
            ("BBC020_v1_outlines_nuclei/.DS_Store", b"junk", False),
            ("BBC020_v1_outlines_nuclei/a_c5_0.TIF", b"data", False),
            ("BBC020_v1_outlines_nuclei/alias.TIF", b"a_c5_0.TIF", True),
        ],
    )
    target = tmp_path / "out"
    target.mkdir()
    assert safe_extract(archive, target) == 2
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if not p.is_dir())
    assert files == ["BBC020_v1_outlines_nuclei/a_c5_0.TIF", "BBC020_v1_outlines_nuclei/alias.TIF"]
    alias = target / "BBC020_v1_outlines_nuclei/alias.TIF"
    assert alias.is_symlink() and alias.read_bytes() == b"data"
    assert os.readlink(alias) == "a_c5_0.TIF"


def test_broad_source_uses_official_base_and_cache_offline(tmp_path, shared_data):
    """`source: broad` with an archive already in the cache (the real nuclei archive, under its
    known sum) needs no network; it resolves to the official base URL."""
    from pipeline.ingest.sources import fetch_archives

    known = "c0cd13f721c8891605ea212c18f4747a198349ea87ea324ee00b0212e397f4cd"
    cache = tmp_path / "data/raw/downloads" / known
    cache.mkdir(parents=True)
    shutil.copy(shared_data / REAL_NUCLEI, cache)
    cfg = make_cfg(
        tmp_path,
        **{
            "data.source": "broad",
            "data.download_retries": 0,
            "data.archives": "BBBC020_v1_outlines_nuclei.zip",
        },
    )
    ((path, digest),) = fetch_archives(cfg, LAYOUTS["bbbc020"], "broad")
    assert path == cache / "BBBC020_v1_outlines_nuclei.zip" and digest == known
    assert sha256_file(path) == known
