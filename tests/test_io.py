import numpy as np
import pytest

from pipeline.errors import DataError
from pipeline.io import atomic_path, read_tif, write_labels, write_tif


def test_folder_swap_keeps_old_version_on_error(tmp_path):
    final = tmp_path / "version"
    with atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("new, half written")
        raise RuntimeError("killed")
    assert (final / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["version"]  # no temporary leftovers


def test_crash_between_the_two_renames_is_repaired(tmp_path):
    final = tmp_path / "version"
    with atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("old")
    # Simulate a crash after `final` was moved aside and before the new one took its place.
    aside = tmp_path / ".atomic" / "version.4194305.x.tmp"  # a pid over Linux's limit: dead
    aside.mkdir(parents=True)
    final.rename(aside / "previous")
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:  # the next write to the path
        assert (final / "a.txt").read_text() == "old"  # ... has put the old version back first
        raise RuntimeError("and fails itself")
    assert (final / "a.txt").read_text() == "old"
    assert not (aside / "previous").exists()


def test_labels_keep_their_ids_beyond_uint16(tmp_path):
    labels = np.zeros((4, 70_000), np.int64)
    labels[0] = np.arange(1, 70_001)
    path = write_labels(tmp_path / "many.tif", labels)
    back = read_tif(path)
    assert back.dtype == np.uint32 and back.max() == 70_000
    assert read_tif(write_labels(tmp_path / "few.tif", labels % 7)).dtype == np.uint16
    with pytest.raises(ValueError, match="negative"):
        write_labels(tmp_path / "bad.tif", labels - 5)


def test_label_images_are_deflate_compressed_and_read_back_exactly(tmp_path):
    import tifffile
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    labels = ndi.label(ndi.binary_opening(rng.random((512, 512)) < 0.5))[0]  # blobs, 0 around
    path = write_labels(tmp_path / "labels.tif", labels)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    assert np.array_equal(read_tif(path), labels) and path.stat().st_size < labels.size


def test_unreadable_tif_names_the_file(tmp_path):
    bad = tmp_path / "x.tif"
    bad.write_bytes(b"junk")
    with pytest.raises(DataError, match="x.tif: not a readable TIF"):
        read_tif(bad)
    write_tif(tmp_path / "ok.tif", np.ones((2, 2), np.uint8))
