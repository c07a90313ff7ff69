"""Ingest: dataset versions (manifest, content id, splits), source kinds and fault safety."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import pipeline.ingest.manifest as manifest_module
from pipeline.errors import DataError
from pipeline.ingest.dataset import ingest
from pipeline.ingest.layouts.base import Field
from pipeline.ingest.manifest import load_manifest
from pipeline.ingest.sources import source_kind
from pipeline.ingest.splits import assign_splits
from tests.archive_server import sha256, zip_bbbc020
from tests.conftest import REPO, make_cfg

STATS_COLUMNS = {
    "field_id",
    "group",
    "split",
    "labelled",
    "image_path",
    "height",
    "width",
    "n_channels",
    "cells_path",
    "nuclei_path",
    "n_cells",
    "n_nuclei",
    "content_hash",
    "c1_min",
    "c1_max",
    "c1_mean",
    "c1_std",
    "c5_min",
    "c5_max",
    "c5_mean",
    "c5_std",
    "cells_coverage",
    "nuclei_coverage",
    "cells_area_min",
    "cells_area_median",
    "cells_area_max",
    "nuclei_area_min",
    "nuclei_area_median",
    "nuclei_area_max",
    "cells_overlap_px",
    "cells_hidden",
    "nuclei_overlap_px",
    "nuclei_hidden",
}


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _versions(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "datasets").iterdir())


@pytest.fixture
def demo_copy(demo_root, tmp_path) -> Path:
    """A private, writable copy of the session's demo set."""
    return Path(shutil.copytree(demo_root, tmp_path / "src"))


def _touch_one_pixel(root: Path) -> None:
    path = root / "BBBC020_v1_images/jw-1h 1/jw-1h 1_c1.TIF"
    rgb = tifffile.imread(path)
    rgb[40, 50, :2] = rgb[40, 50, 0] ^ 1  # R = G: the intensity (max over colour) changes by 1
    tifffile.imwrite(path, rgb, photometric="rgb")


def test_manifest_and_id_are_stable_and_change_with_one_pixel(tmp_path, demo_copy):
    first = ingest(make_cfg(tmp_path / "a", **{"data.source": str(demo_copy)}))
    second = ingest(make_cfg(tmp_path / "b", **{"data.source": str(demo_copy)}))
    assert first.dataset_id == second.dataset_id
    for name in ("manifest.csv", "dataset.json"):
        assert (Path(first.uri) / name).read_bytes() == (Path(second.uri) / name).read_bytes()
    assert _tree_digest(Path(first.uri)) == _tree_digest(Path(second.uri))
    _touch_one_pixel(demo_copy)
    changed = ingest(make_cfg(tmp_path / "a", **{"data.source": str(demo_copy)}))
    assert changed.dataset_id != first.dataset_id
    before, _ = load_manifest(first.uri)
    after, _ = load_manifest(changed.uri)
    diff = before.loc[before["content_hash"] != after["content_hash"], "field_id"].tolist()
    assert diff == ["jw-1h 1"]
    assert _versions(tmp_path / "a/data") == sorted(
        [f"bbbc020-{first.dataset_id}", f"bbbc020-{changed.dataset_id}"]
    )


def test_manifest_columns_splits_and_unlabelled_fields(tiny_cfg):
    ref = ingest(tiny_cfg)
    manifest, meta = load_manifest(ref.uri)
    assert STATS_COLUMNS <= set(manifest.columns)
    assert (ref.n_fields, ref.n_labelled, ref.n_skipped_files) == (8, 7, 0)
    assert meta["n_skipped_files"] == 0 and meta["skipped_files"] == []
    assert "smaller object" in meta["overlap_rule"] and meta["channels"] == ["c1", "c5"]
    row = manifest.set_index("field_id").loc["jw-30min 1"]
    assert row["split"] == "unlabelled" and not row["labelled"] and row["cells_path"] == ""
    assert row["image_path"] and row["n_cells"] == 0  # kept for prediction, never for scoring
    labelled = manifest[manifest["labelled"]]
    assert set(labelled["split"]) == {"train", "val", "test"}
    root = Path(ref.uri)
    for r in labelled.itertuples():
        image, cells = tifffile.imread(root / r.image_path), tifffile.imread(root / r.cells_path)
        assert image.shape == (2, r.height, r.width) and cells.dtype == np.uint16
        areas = np.bincount(cells.ravel())[1:]
        areas = areas[areas > 0]
        assert r.n_cells == areas.size and r.cells_area_max == areas.max()
        assert r.cells_area_min == areas.min() and r.cells_area_median == np.median(areas)
        assert r.c1_max == image[0].max() and r.c5_mean == pytest.approx(image[1].mean())


def _fields(groups: dict[str, int], unlabelled: int = 0) -> list[Field]:
    lab = {"nuclei": np.ones((2, 2), np.uint16)}
    out = [
        Field(f"{g}-t{i:03d}", g, np.zeros((1, 2, 2)), lab)
        for g, n in groups.items()
        for i in range(n)
    ]
    return out + [Field(f"u{i}", "x", np.zeros((1, 2, 2))) for i in range(unlabelled)]


def test_stratified_splits_are_deterministic_disjoint_and_cover_groups():
    fields = _fields({"Kontrolle": 3, "15min": 5, "1h": 5, "2h": 2, "24h": 5}, unlabelled=5)
    splits = assign_splits(fields, "stratified", 0.2, 0.2, seed=0)
    assert splits == assign_splits(fields[::-1], "stratified", 0.2, 0.2, seed=0)  # order-free
    assert set(splits) == {f.field_id for f in fields}  # one split per field, no field twice
    counts = {s: sum(v == s for v in splits.values()) for s in ("train", "val", "test")}
    assert counts == {"train": 12, "val": 4, "test": 4}
    assert [splits[f"u{i}"] for i in range(5)] == ["unlabelled"] * 5
    test_groups = {fid.split("-")[0] for fid, s in splits.items() if s == "test"}
    assert len(test_groups) == 4  # four test fields from four different conditions
    assert splits != assign_splits(fields, "stratified", 0.2, 0.2, seed=1)
    held_out = {fid.split("-")[0] for fid, s in splits.items() if s in ("test", "val")}
    assert held_out == {"Kontrolle", "15min", "1h", "2h", "24h"}  # every condition is held out
    # Which condition misses the test split depends on the seed, not on its name.
    tested = set()
    for seed in range(10):
        s = assign_splits(fields, "stratified", 0.2, 0.2, seed=seed)
        tested |= {fid.split("-")[0] for fid, v in s.items() if v == "test"}
    assert tested == {"Kontrolle", "15min", "1h", "2h", "24h"}


def test_contiguous_splits_take_the_last_frames_of_each_sequence():
    fields = _fields({"01": 10, "02": 5})
    splits = assign_splits(fields, "contiguous", 0.2, 0.2, seed=0)
    seq1 = [splits[f"01-t{i:03d}"] for i in range(10)]
    seq2 = [splits[f"02-t{i:03d}"] for i in range(5)]
    assert seq1 == ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    assert seq2 == ["train"] * 3 + ["val"] + ["test"]
    with pytest.raises(ValueError, match="split strategy"):
        assign_splits(fields, "random", 0.2, 0.2, seed=0)


def test_failure_mid_write_keeps_previous_version(tmp_path, demo_copy, monkeypatch):
    cfg = make_cfg(tmp_path, **{"data.source": str(demo_copy)})
    good = ingest(cfg)
    before = _tree_digest(Path(good.uri))
    _touch_one_pixel(demo_copy)
    real_write, calls = manifest_module.write_tif, []

    def disk_full_after_three(path, array, **kwargs):
        calls.append(path)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, array, **kwargs)

    monkeypatch.setattr(manifest_module, "write_tif", disk_full_after_three)
    with pytest.raises(DataError, match="disk full.*earlier versions are intact"):
        ingest(cfg)
    assert os.listdir(tmp_path / "data/datasets") == [Path(good.uri).name]  # no half version
    assert _tree_digest(Path(good.uri)) == before
    monkeypatch.undo()
    rerun = ingest(cfg)
    assert rerun.dataset_id != good.dataset_id and load_manifest(rerun.uri)[0].shape[0] == 8


KILLER = """
import json, os, signal, sys
import pipeline.ingest.manifest as manifest
from pipeline.config import load_config
from pipeline.ingest.dataset import ingest
real, n = manifest.write_tif, []
def write_then_die(*args, **kwargs):
    n.append(1)
    if len(n) > 4:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
manifest.write_tif = write_then_die
ingest(load_config(None, json.loads(sys.argv[1])))
"""


def test_killed_ingestion_leaves_previous_version_and_reruns_cleanly(tmp_path, demo_copy):
    overrides = {
        "data.source": str(demo_copy),
        "paths.data_dir": str(tmp_path / "data"),
        "data.demo_fields": 8,
        "tracking.backend": "none",
    }
    cfg = make_cfg(tmp_path, **{"data.source": str(demo_copy)})
    good = ingest(cfg)
    before = _tree_digest(Path(good.uri))
    _touch_one_pixel(demo_copy)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, json.dumps(overrides)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr  # really killed mid-write
    leftovers = [p for p in (tmp_path / "data/datasets").iterdir() if p.name.startswith(".")]
    assert len(leftovers) == 1 and not (leftovers[0] / "dataset.json").exists()
    assert _tree_digest(Path(good.uri)) == before
    assert load_manifest(good.uri)[1]["dataset_id"] == good.dataset_id
    rerun = ingest(cfg)
    assert _versions(tmp_path / "data") == sorted([Path(good.uri).name, Path(rerun.uri).name])
    assert not leftovers[0].exists()  # the dead run's temporary folder was cleaned up


def test_local_archives_folder_checked_against_sums(tmp_path, demo_root, tiny_cfg):
    folder = tmp_path / "downloads"
    zips = zip_bbbc020(demo_root, folder)
    before = {n: p.read_bytes() for n, p in zips.items()}
    sums = {n: sha256(b) for n, b in before.items()}
    overrides = {"data.source": str(folder), "data.sha256": [f"{n}={s}" for n, s in sums.items()]}
    ref = ingest(make_cfg(tmp_path / "run", **overrides))
    assert ref.dataset_id == ingest(tiny_cfg).dataset_id  # same content as the extracted folder
    assert {n: p.read_bytes() for n, p in zips.items()} == before  # raw archives untouched
    _, meta = load_manifest(ref.uri)
    assert meta["source_info"]["kind"] == "archives"
    # Official names are checked against the built-in sums: these demo archives fail them.
    with pytest.raises(DataError, match="BBBC020_v1_images.zip: sha256 mismatch.*edf4a87be957"):
        ingest(make_cfg(tmp_path / "run1", **{"data.source": str(folder)}))
    # Other names: a SHA256SUMS file beside the archives is used; a wrong sum stops extraction.
    other = tmp_path / "other"
    other.mkdir()
    for n, p in zips.items():
        shutil.copy(p, other / n.replace("BBBC020_v1_", "demo-"))
    (other / "SHA256SUMS").write_text(
        "".join(f"{s}  {n.replace('BBBC020_v1_', 'demo-')}\n" for n, s in sums.items())
    )
    assert ingest(make_cfg(tmp_path / "run2", **{"data.source": str(other)})).dataset_id == (
        ref.dataset_id
    )
    (other / "SHA256SUMS").write_text(
        (other / "SHA256SUMS").read_text().replace(sums["BBBC020_v1_outlines_cells.zip"], "f" * 64)
    )
    with pytest.raises(DataError, match="demo-outlines_cells.zip: sha256 mismatch"):
        ingest(make_cfg(tmp_path / "run3", **{"data.source": str(other)}))
    assert not (tmp_path / "run3/data/raw/extracted").exists()


def test_corrupt_object_in_archive_is_skipped_and_counted(tmp_path, demo_copy):
    victim = demo_copy / "BBC020_v1_outlines_nuclei" / "jw-1h 1_c5_0.TIF"
    victim.write_bytes(b"II*\x00" + b"\x00" * 40)  # unreadable, like the served archive's file
    n_files = len(list(victim.parent.glob("jw-1h 1_c5_*.TIF")))
    archive = zip_bbbc020(demo_copy, tmp_path / "zips")["BBBC020_v1_outlines_nuclei.zip"]
    ref = ingest(
        make_cfg(
            tmp_path,
            **{
                "data.source": str(archive),
                "data.target": "nuclei",
                "data.sha256": f"{archive.name}={sha256(archive.read_bytes())}",
            },
        )
    )
    assert ref.n_skipped_files == 1 and ref.to_dict()["n_skipped_files"] == 1
    manifest, meta = load_manifest(ref.uri)
    assert (
        meta["n_skipped_files"] == 1 and "jw-1h 1_c5_0.TIF: unreadable" in meta["skipped_files"][0]
    )
    row = manifest.set_index("field_id").loc["jw-1h 1"]
    assert row["n_nuclei"] == n_files - 1 and row["image_path"] == "" and row["height"] == 128


def test_source_kinds(tmp_path, demo_root):
    (tmp_path / "zips").mkdir()
    (tmp_path / "zips" / "a.zip").write_bytes(b"")
    assert source_kind("demo") == "demo" and source_kind(str(tmp_path / "broad")) == "broad"
    assert source_kind("https://data.broadinstitute.org/bbbc/BBBC020") == "http"
    assert source_kind("s3://bucket/prefix") == "s3"
    assert source_kind(str(tmp_path / "zips")) == "archives"
    assert source_kind(str(tmp_path / "zips" / "a.zip")) == "archive"
    assert source_kind(str(demo_root)) == "folder"
    with pytest.raises(DataError, match="no such file or folder"):
        source_kind(str(tmp_path / "missing"))


@pytest.mark.slow  # starts the session's SeaweedFS server (about 5 s up, up to 20 s down)
def test_s3_prefix_with_archives_or_extracted_tree(s3_server, tmp_path, demo_root, tiny_cfg):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server)
    client.create_bucket(Bucket="raw-data")
    # Names other than the official ones, whose built-in sums these demo archives would fail.
    zips = {
        n.replace("BBBC020_v1_", "demo-"): p
        for n, p in zip_bbbc020(demo_root, tmp_path / "zips").items()
    }
    sums = "".join(f"{sha256(p.read_bytes())}  {n}\n" for n, p in zips.items())
    for name, path in zips.items():
        client.upload_file(str(path), "raw-data", f"bbbc020/archives/{name}")
    client.put_object(Bucket="raw-data", Key="bbbc020/archives/SHA256SUMS", Body=sums.encode())
    for path in demo_root.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), "raw-data", f"bbbc020/tree/{path.relative_to(demo_root)}")
    expected = ingest(tiny_cfg).dataset_id
    for prefix in ("archives", "tree"):
        cfg = make_cfg(
            tmp_path / prefix,
            **{"data.source": f"s3://raw-data/bbbc020/{prefix}", "data.s3_endpoint_url": s3_server},
        )
        assert ingest(cfg).dataset_id == expected
    with pytest.raises(DataError, match="no objects under this prefix"):
        ingest(
            make_cfg(
                tmp_path / "none",
                **{"data.source": "s3://raw-data/nothing", "data.s3_endpoint_url": s3_server},
            )
        )
