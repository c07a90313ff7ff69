"""The colour JPEG export augmentation: the artefacts of a real export, the objects in place."""

import numpy as np
import pytest
import tifffile

import pipeline.train.jpeg as jpeg
from pipeline.config.training import AugmentConfig
from pipeline.preprocess.samples import normalise
from pipeline.train.augment import random_crop


@pytest.fixture(scope="module")
def hela_crop(shared_data) -> np.ndarray:
    """A (1, 256, 256) float32 crop of a real HeLa frame, normalised as training sees it."""
    raw = tifffile.imread(shared_data / "ctc" / "Fluo-N2DL-HeLa" / "01" / "t004.tif")
    return normalise(raw[None].astype(np.float32), 1, 99.8)[:, :256, :256].astype(np.float32)


def test_a_dim_blue_export_flattens_the_background_as_a_real_one_does(hela_crop, monkeypatch):
    """Blue over 0-50 grey levels at quality 90 with 4:2:0 chroma, as Pillow saves it: the
    background's noise, one or two levels above zero on 85% of its pixels, is quantised away
    block by block, and what remains is the same pixels as Pillow's export gives."""
    import io

    from PIL import Image

    monkeypatch.setattr(jpeg, "COLOURS", {"blue": ((1, 0, 0), 1.0)})
    monkeypatch.setattr(jpeg, "LEVELS", (50.0, 50.0))
    monkeypatch.setattr(jpeg, "QUALITY", (90, 90))
    monkeypatch.setattr(jpeg, "SUBSAMPLED", 1.0)
    before = hela_crop.copy()
    out = jpeg.jpeg_export(hela_crop, np.random.default_rng(0))
    assert np.array_equal(hela_crop, before)  # the input is left as it is
    assert out.shape == hela_crop.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0

    grey = np.rint(np.clip(hela_crop[0], 0, 1) * 50).astype(np.uint8)
    rgb = np.zeros((*grey.shape, 3), np.uint8)
    rgb[..., 2] = grey
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=90)
    pillow = np.asarray(Image.open(io.BytesIO(buffer.getvalue()))).max(axis=-1) / 50.0
    assert np.abs(out[0] - pillow).max() < 1e-6

    background = hela_crop[0] < 0.05
    assert (grey[background] > 0).mean() > 0.5  # noise before
    assert (out[0][background] > 0).mean() < 0.1  # plates and zeros after


def test_every_colour_keeps_the_objects_where_they_are(hela_crop):
    """Whatever the draw (colour, range, quality, chroma), the export is the crop give or take
    the 8 bits and the blocks, never moved or inverted."""
    for seed in range(12):
        out = jpeg.jpeg_export(hela_crop, np.random.default_rng(seed))
        assert np.corrcoef(out.ravel(), hela_crop.ravel())[0, 1] > 0.85, seed
        assert np.abs(out - hela_crop).mean() < 0.03, seed


def test_a_crop_exported_as_jpeg_keeps_its_labels():
    """random_crop with train.augment.jpeg: the image changes, the labels are the same crop's."""
    rng = np.random.default_rng(0)
    image = rng.random((1, 96, 96)).astype(np.float32) * 0.2
    labels = np.zeros((96, 96), np.int32)
    labels[20:50, 30:70] = 1
    image[0, 20:50, 30:70] += 0.6
    plain = AugmentConfig(scale_min=1.0, scale_max=1.0, elastic=0, intensity=0, noise=0, blur=0)
    exported = AugmentConfig(**{**plain.__dict__, "jpeg": 0.999})
    x0, y0 = random_crop(image, labels, 64, plain, np.random.default_rng(1))
    x1, y1 = random_crop(image, labels, 64, exported, np.random.default_rng(1))
    assert np.array_equal(y0, y1)
    assert not np.array_equal(x0, x1) and np.abs(x0 - x1).mean() < 0.05


def test_a_flat_image_is_refused_with_its_shape():
    with pytest.raises(ValueError, match=r"\(C, H, W\) float32 image, got \(64, 64\)"):
        jpeg.jpeg_export(np.zeros((64, 64), np.float32), np.random.default_rng(0))
