"""Layout parsers on the real data in ../shared and on small hand-made folders."""

from __future__ import annotations

import collections
import re
import shutil
import zipfile

import numpy as np
import pytest
import tifffile

from pipeline.errors import DataError
from pipeline.ingest.extract import safe_extract
from pipeline.ingest.layouts import LAYOUTS, get_layout
from pipeline.ingest.layouts.base import merge_objects, overlap_stats
from pipeline.ingest.layouts.bbbc020 import parse_bbbc020
from pipeline.ingest.layouts.ctc import parse_ctc
from pipeline.ingest.layouts.folder import parse_folder

REAL_NUCLEI = "bbbc020/BBBC020_v1_outlines_nuclei.zip"


@pytest.fixture(scope="module")
def real_nuclei(shared_data, tmp_path_factory):
    """The real nuclei archive extracted once; returns (root, per-field object counts from the
    zip's names, computed independently of the parser)."""
    archive = shared_data / REAL_NUCLEI
    root = tmp_path_factory.mktemp("real_nuclei")
    safe_extract(archive, root)
    names = zipfile.ZipFile(archive).namelist()
    counts = collections.Counter(
        m[1] for n in names if (m := re.fullmatch(r"BBC020_v1_outlines_nuclei/(.+)_c5_\d+\.TIF", n))
    )
    return root, counts


def test_real_nuclei_archive_gives_20_fields_and_700_nuclei(real_nuclei):
    root, counts = real_nuclei
    result = parse_bbbc020(root)
    assert result.skipped == []
    assert len(result.fields) == 20 and sum(counts.values()) == 700
    got = {f.field_id: len(np.unique(f.labels["nuclei"])) - 1 for f in result.fields}
    assert got == dict(counts)
    assert got["jw-1h 1"] == 55 and got["jw-Kontrolle1"] == 23  # spot checks from the README list
    assert {f.group for f in result.fields} == {"Kontrolle", "15min", "1h", "2h", "24h"}
    for f in result.fields:
        assert f.image.shape == (0, 1040, 1388)  # ground truth without its image
        assert set(f.labels) == {"nuclei"} and f.labels["nuclei"].dtype == np.uint16
        assert f.stats["nuclei_hidden"] == 0  # every nucleus keeps visible pixels
    assert not any("30min" in f.field_id for f in result.fields)


def test_corrupt_object_file_is_reported_and_skipped(real_nuclei, tmp_path):
    """Like the archive served today (jw-15min 5_c5_43.TIF unreadable): named, skipped, counted."""
    root, counts = real_nuclei
    folder = tmp_path / "BBC020_v1_outlines_nuclei"
    folder.mkdir()
    for path in (root / "BBC020_v1_outlines_nuclei").glob("jw-15min 5_*"):
        (folder / path.name).symlink_to(path)
    bad = folder / "jw-15min 5_c5_43.TIF"
    bad.write_bytes(b"II*\x00" + b"\xff" * 64)  # a TIF header, then garbage
    result = parse_bbbc020(tmp_path)
    assert len(result.skipped) == 1 and result.skipped[0].startswith(str(bad))
    (field,) = result.fields
    assert len(np.unique(field.labels["nuclei"])) - 1 == counts["jw-15min 5"]


@pytest.mark.parametrize("dataset", ["Fluo-N2DL-HeLa", "Fluo-N2DH-GOWT1"])
def test_real_ctc_pairs_match_label_files(shared_data, dataset):
    root = shared_data / "ctc" / dataset
    result = parse_ctc(root)
    seq = next(p for p in root.iterdir() if re.fullmatch(r"\d+", p.name))
    frames = sorted(seq.glob("t*.tif"))
    assert (
        len(result.fields) == len(frames) == {"Fluo-N2DL-HeLa": 39, "Fluo-N2DH-GOWT1": 27}[dataset]
    )
    for f, frame in zip(result.fields, frames, strict=True):
        mask = root / f"{seq.name}_ST" / "SEG" / f"man_seg{frame.stem[1:]}.tif"
        truth = tifffile.imread(mask)
        assert f.field_id == f"{seq.name}-{frame.stem}" and f.group == seq.name
        assert np.array_equal(f.image[0], tifffile.imread(frame))
        assert f.labels["nuclei"].shape == f.image.shape[1:] == truth.shape
        assert len(np.unique(f.labels["nuclei"])) == len(np.unique(truth))
        assert np.array_equal(f.labels["nuclei"], truth)


def test_ctc_parent_folder_holds_both_datasets(shared_data):
    result = parse_ctc(shared_data / "ctc")
    assert len(result.fields) == 39 + 27
    assert {f.group for f in result.fields} == {"Fluo-N2DH-GOWT1-02", "Fluo-N2DL-HeLa-01"}
    assert len({f.field_id for f in result.fields}) == 66


def test_ctc_frames_without_labels_are_unlabelled(tmp_path):
    (tmp_path / "01").mkdir()
    (tmp_path / "01_GT/SEG").mkdir(parents=True)
    for t in range(3):
        tifffile.imwrite(tmp_path / f"01/t{t:03d}.tif", np.full((8, 9), t, np.uint16))
    lab = np.zeros((8, 9), np.uint16)
    lab[1:3, 1:3], lab[5:7, 5:8] = 4, 9
    tifffile.imwrite(tmp_path / "01_GT/SEG/man_seg001.tif", lab)
    fields = parse_ctc(tmp_path).fields
    assert [bool(f.labels) for f in fields] == [False, True, False]
    assert set(np.unique(fields[1].labels["nuclei"])) == {0, 4, 9}


def test_plain_folder_binary_and_instance_masks(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    img = np.arange(20 * 30, dtype=np.uint16).reshape(20, 30)
    binary = np.zeros((20, 30), np.uint8)
    binary[2:6, 2:6] = binary[10:15, 20:25] = 255  # two separate blobs, 0/255
    instance = np.zeros((20, 30), np.uint16)
    instance[2:8, 2:8], instance[2:8, 8:12], instance[15:18, 1:4] = 3, 7, 12  # 3 and 7 touch
    for stem, mask in (("a", binary), ("b", instance), ("orphan", instance)):
        tifffile.imwrite(tmp_path / "masks" / f"{stem}.tif", mask)
    for stem in ("a", "b", "c"):
        tifffile.imwrite(tmp_path / "images" / f"{stem}.tif", img)
    result = parse_folder(tmp_path)
    by_id = {f.field_id: f for f in result.fields}
    assert sorted(by_id) == ["a", "b", "c"]
    assert len(np.unique(by_id["a"].labels["nuclei"])) - 1 == 2  # components of the binary mask
    assert np.array_equal(by_id["b"].labels["nuclei"], instance)  # touching instances kept apart
    assert by_id["c"].labels == {} and by_id["a"].image.shape == (1, 20, 30)
    assert len(result.skipped) == 1 and "orphan" in result.skipped[0]


def test_plain_folder_of_png_jpeg_and_colour_images(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    grey = np.arange(20 * 30).reshape(20, 30).astype(np.uint8)
    zero = np.zeros_like(grey)
    binary = np.zeros((20, 30), np.uint8)
    binary[2:6, 2:6] = binary[10:15, 20:25] = 255
    Image.fromarray(np.dstack([zero, grey, zero])).save(tmp_path / "images/a.png")  # green
    Image.fromarray(binary).save(tmp_path / "masks/a.png")
    Image.fromarray(grey).save(tmp_path / "images/b.jpg")
    tifffile.imwrite(tmp_path / "masks/b.tif", binary)
    (tmp_path / "images/notes.txt").write_text("x")
    result = parse_folder(tmp_path)
    by_id = {f.field_id: f for f in result.fields}
    assert sorted(by_id) == ["a", "b"] and by_id["a"].image.shape == (1, 20, 30)
    assert np.array_equal(by_id["a"].image[0], grey)  # the green lookup's intensity
    assert by_id["a"].labels["nuclei"].max() == 2 == by_id["b"].labels["nuclei"].max()
    assert result.skipped == [f"{tmp_path / 'images/notes.txt'}: not an image; ignored"]
    Image.fromarray(binary).save(tmp_path / "masks/a.jpg")  # a lossy mask beside the PNG one
    with pytest.raises(DataError, match=r"a\.jpg and .*a\.png: one field name, two files"):
        parse_folder(tmp_path)
    (tmp_path / "masks/a.png").unlink()
    with pytest.raises(DataError, match=r"a\.jpg: a mask in lossy JPEG.*export masks as PNG"):
        parse_folder(tmp_path)


def test_merge_objects_smaller_wins_and_hidden_are_counted():
    big = np.zeros((10, 10), bool)
    big[2:8, 2:8] = True
    small = np.zeros((10, 10), bool)
    small[4:6, 4:6] = True
    lab = merge_objects([big, small], (10, 10))
    assert lab.dtype == np.uint16 and lab[5, 5] == 2 and lab[2, 2] == 1
    assert overlap_stats([big, small], lab, "cells") == {"cells_overlap_px": 4, "cells_hidden": 0}
    covered = small.copy()  # a second object identical to a smaller one disappears: counted
    lab = merge_objects([small, covered], (10, 10))
    assert overlap_stats([small, covered], lab, "cells")["cells_hidden"] == 1
    with pytest.raises(ValueError, match="shape"):
        merge_objects([big], (5, 5))


def test_bbbc020_demo_with_images(demo_root, tmp_path):
    result = parse_bbbc020(demo_root)
    by_id = {f.field_id: f for f in result.fields}
    assert len(by_id) == 8 and result.skipped == []
    rgb = tifffile.imread(demo_root / "BBBC020_v1_images/jw-1h 1/jw-1h 1_c1.TIF")
    f = by_id["jw-1h 1"]
    assert f.image.shape == (2, 128, 160) and f.image.dtype == np.uint8
    assert np.array_equal(f.image[0], rgb.max(axis=-1))  # intensity = max over colour axis
    n_files = len(list((demo_root / "BBC020_v1_outlines_cells").glob("jw-1h 1_c1_*.TIF")))
    n_cells = len(np.unique(f.labels["cells"])) - 1
    assert n_cells + f.stats["cells_hidden"] == n_files and f.stats["cells_overlap_px"] >= 0
    assert by_id["jw-30min 1"].labels == {} and by_id["jw-30min 1"].image.shape[0] == 2
    # Masks of a field whose image folder is missing are reported, not silently dropped.
    copy = tmp_path / "bbbc020"
    shutil.copytree(demo_root, copy)
    shutil.rmtree(copy / "BBBC020_v1_images/jw-1h 1")
    result = parse_bbbc020(copy)
    assert "jw-1h 1" not in {f.field_id for f in result.fields}
    assert len(result.skipped) == 2 * n_files and "no image folder" in result.skipped[0]


def test_bbbc020_nested_folder_and_errors(demo_root, tmp_path):
    (tmp_path / "download").mkdir()
    (tmp_path / "download" / "BBC020_v1_outlines_nuclei").symlink_to(
        demo_root / "BBC020_v1_outlines_nuclei"
    )
    assert len(parse_bbbc020(tmp_path).fields) == 7  # one level down is found; 30min has none
    with pytest.raises(DataError, match="no BBBC020_v1_images/"):
        parse_bbbc020(tmp_path / "download" / "BBC020_v1_outlines_nuclei")
    with pytest.raises(ValueError, match="valid layouts: bbbc020, ctc, folder"):
        get_layout("nope")
    assert LAYOUTS["bbbc020"].target_channel == {"cells": "c1", "nuclei": "c5"}
