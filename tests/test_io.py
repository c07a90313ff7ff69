import numpy as np
import pytest
import tifffile

from pipeline.colour import colour_intensity
from pipeline.errors import DataError
from pipeline.io import read_image, read_tif, write_labels, write_tif


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
    tall = labels[:, :300]  # 436 rows a strip: the second strip is a part of one
    assert np.array_equal(read_tif(write_labels(tmp_path / "tall.tif", tall)), tall)
    with pytest.raises(ValueError, match=r"labels.tif: labels must be a non-empty \(H, W\)"):
        write_labels(tmp_path / "labels.tif", labels[None])


def test_unreadable_tif_names_the_file(tmp_path):
    bad = tmp_path / "x.tif"
    bad.write_bytes(b"junk")
    with pytest.raises(DataError, match="x.tif: not a readable TIF"):
        read_tif(bad)
    write_tif(tmp_path / "ok.tif", np.ones((2, 2), np.uint8))


def test_png_jpeg_and_bmp_images_are_read_as_grey_or_colour_without_alpha(tmp_path):
    from PIL import Image

    grey = np.random.default_rng(0).integers(0, 256, (20, 30)).astype(np.uint8)
    deep = grey.astype(np.uint16) * 257  # 16-bit
    Image.fromarray(grey).save(tmp_path / "a.png")
    Image.fromarray(deep).save(tmp_path / "b.png")
    Image.fromarray(grey).save(tmp_path / "c.bmp")
    Image.fromarray(np.dstack([grey, grey])).save(tmp_path / "d.png")  # grey + alpha
    Image.fromarray(np.dstack([grey, grey, grey, grey // 2])).save(tmp_path / "e.png")  # RGBA
    Image.fromarray(grey).convert("P").save(tmp_path / "f.png")  # a palette
    Image.fromarray(grey).save(tmp_path / "g.jpg", quality=95)
    for name in ("a.png", "c.bmp", "d.png"):
        got = read_image(tmp_path / name)
        assert got.dtype == np.uint8 and np.array_equal(got, grey), name
    assert read_image(tmp_path / "b.png").dtype == np.uint16
    assert np.array_equal(read_image(tmp_path / "b.png"), deep)
    rgb = read_image(tmp_path / "e.png")
    assert rgb.shape == (20, 30, 3) and np.array_equal(colour_intensity(rgb), grey)
    assert read_image(tmp_path / "f.png").shape == (20, 30, 3)  # the palette looked up
    jpeg = read_image(tmp_path / "g.jpg")
    assert jpeg.shape == grey.shape and np.abs(jpeg.astype(int) - grey).mean() < 8
    tifffile.imwrite(tmp_path / "h.tif", grey)
    assert np.array_equal(read_image(tmp_path / "h.tif"), grey)  # TIFs as read_tif reads them


def test_unreadable_images_name_the_file(tmp_path):
    from PIL import Image

    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match="junk.png: not a readable image"):
        read_image(tmp_path / "junk.png")
    Image.fromarray(np.zeros((64, 64), np.uint8) + 9).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])  # a download cut short
    with pytest.raises(DataError, match="cut.png: not a readable image"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(DataError, match="gone.jpg: file not found"):
        read_image(tmp_path / "gone.jpg")


def test_an_image_past_pillows_pixel_limit_names_the_fix(tmp_path, monkeypatch):
    from PIL import Image

    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "mosaic.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's setting, 89 Mpx by default
    with pytest.raises(DataError, match="mosaic.png: more pixels than Pillow opens.*as a TIF"):
        read_image(tmp_path / "mosaic.png")
