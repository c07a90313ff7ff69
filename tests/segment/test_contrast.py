"""Each object's contrast with the background around it, in noise deviations, and the empty
field it tells: measured right on known noise, and on a real CTC HeLa frame, where the
background of an empty part of the field (what the network drew objects in) stands under the
cut and every true nucleus far above it."""

import dataclasses

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from pipeline.config import PostprocessConfig
from pipeline.preprocess.samples import normalise
from pipeline.segment.contrast import MIN_PAIRS, noise_sigma, object_contrast
from pipeline.segment.postprocess import drop_small_objects


def _disc(shape=(120, 160), centre=(60, 80), radius=20) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (np.hypot(yy - centre[0], xx - centre[1]) < radius).astype(np.int32)


@pytest.mark.parametrize("sigma", [0.02, 0.3, 0.5, 1.0])
def test_the_noise_deviation_is_measured_on_the_background(sigma):
    """Gaussian noise of a known deviation, with a bright square the background mask leaves out:
    measured within 3%. Rounded to whole grey levels (an 8-bit image): from half a level up
    within a fifth; at 0.3 of a level, where the median difference is 0, not 0 but low (which
    reads objects as more contrasted: the cut keeps more)."""
    rng = np.random.default_rng(0)
    image = rng.normal(10.0, sigma, (300, 300)).astype(np.float32)
    image[100:200, 100:200] += 50.0
    background = np.ones(image.shape, bool)
    background[90:210, 90:210] = False
    assert noise_sigma(image, background) == pytest.approx(sigma, rel=0.03)
    assert noise_sigma(image) > noise_sigma(image, background)  # the whole: the edges count
    rounded = noise_sigma(np.round(image), background)
    if sigma >= 0.5:
        assert rounded == pytest.approx(sigma, rel=0.2)
    elif sigma == 0.3:
        assert 0.1 < rounded < sigma
    tiny = np.zeros(image.shape, bool)
    tiny[0, : MIN_PAIRS // 2] = True
    assert np.isnan(noise_sigma(image, tiny))  # too few pairs: not measured
    assert noise_sigma(np.ones((20, 20))) == 0.0  # flat
    with pytest.raises(ValueError, match=r"\(300, 300\), \(300, 299\)"):
        noise_sigma(image, background[:, 1:])


def test_a_disc_three_deviations_bright_is_three_and_a_patch_of_noise_about_none():
    rng = np.random.default_rng(1)
    disc = _disc()
    noise = rng.normal(0.2, 0.05, disc.shape)
    labels = disc.copy()
    labels[5:25, 5:25] = 2  # a patch of background called an object
    contrast = object_contrast(labels, noise + 0.15 * disc)
    assert np.isnan(contrast[0])
    assert contrast[1] == pytest.approx(3.0, abs=0.2)
    assert abs(contrast[2]) < 0.5
    means = np.array([0.0, 0.5, 0.2])  # the caller's own means are used
    assert object_contrast(labels, noise, means)[1] == pytest.approx(6.0, abs=0.3)
    with pytest.raises(ValueError, match=r"means of shape \(2,\) for 3 labels"):
        object_contrast(labels, noise, means[:2])
    with pytest.raises(ValueError, match=r"\(120, 160\), \(120, 159\)"):
        object_contrast(labels, noise[:, 1:])
    with pytest.raises(ValueError, match="exact up to 2..24; got 16777217"):
        object_contrast(np.where(labels == 2, 2**24 + 1, labels), noise)


def test_an_object_with_nothing_around_it_stands_out_of_nothing():
    """Two objects filling a noisy field: no background around them, the noise measured on the
    whole image, each NaN (no object of the field stands out: an empty field); a disc on a
    noiseless background: +inf (nothing to measure it by; kept); no objects: entry 0 alone."""
    full = np.ones((50, 50), np.int32)
    full[:, 25:] = 2
    noisy = np.random.default_rng(2).normal(0.0, 1.0, full.shape)
    assert np.isnan(object_contrast(full, noisy)).all()
    post = PostprocessConfig(min_object_size=10, min_relative_size=0.0)
    assert drop_small_objects(full, post, noisy).max() == 0
    assert np.isinf(object_contrast(_disc(), _disc().astype(float))[1:]).all()
    assert drop_small_objects(_disc(), post, _disc().astype(float)).max() == 1
    assert np.isnan(object_contrast(np.zeros((8, 8), np.int32), np.zeros((8, 8)))).all()


def test_a_real_empty_field_keeps_no_object_and_a_real_field_all_of_its_own(shared_data):
    """The CTC HeLa frame t004 of sequence 01 as preprocess normalises it. A 192 px square 12 px
    or more from every nucleus of the silver truth is the field a tile of a slide away from the
    cells is: normalised alone, its brighter half, smoothed (the one to three objects covering
    40-80% of such a crop that the trained network drew), stands under one deviation out of the
    rest, and the default cut (2) keeps none of it. In the whole frame every nucleus of the
    truth stands two or more out of its surroundings; with such a blob among them the field is
    not empty, and every object stays (the cut is the field's, not each object's)."""
    folder = shared_data / "ctc" / "Fluo-N2DL-HeLa"
    raw = tifffile.imread(folder / "01" / "t004.tif").astype(np.float32)
    truth = tifffile.imread(folder / "01_ST" / "SEG" / "man_seg004.tif").astype(np.int32)
    window = np.s_[408:600, 587:779]
    assert not ndi.binary_dilation(truth > 0, iterations=12)[window].any()
    crop = normalise(raw[window][None], 1.0, 99.8)[0]
    smooth = ndi.gaussian_filter(crop, 8)
    junk = ndi.label(smooth > np.median(smooth))[0]
    assert junk.max() >= 1 and (junk > 0).mean() > 0.3
    assert (object_contrast(junk, crop)[1:] < 1.0).all()
    post = PostprocessConfig(min_object_size=10, min_relative_size=0.0)
    assert post.min_field_contrast == 2.0  # the default
    assert drop_small_objects(junk, post, crop).max() == 0
    off = drop_small_objects(junk, dataclasses.replace(post, min_field_contrast=0.0), crop)
    assert off.max() == junk.max()  # 0 switches the cut off
    image = normalise(raw[None], 1.0, 99.8)[0]
    ids = np.unique(truth)[1:]  # the truth's labels are not consecutive
    assert (object_contrast(truth, image)[ids] >= 2.0).all()
    both = truth.copy()
    both[window] = np.where(junk > 0, junk + truth.max(), 0)
    assert (object_contrast(both, image)[truth.max() + 1 :] < 1.0).all()
    kept = drop_small_objects(both, post, image)  # relabelled 1..n
    assert kept.max() == len(np.unique(both)) - 1
    np.testing.assert_array_equal(kept > 0, both > 0)


def test_a_field_too_small_for_the_grid_is_measured_on_every_pixel(shared_data):
    """A 24 px square of the HeLa t004 background: on every other row and column it has too few
    pixel pairs to measure the noise by, which read as no noise at all (every object +inf, the
    network's six objects over 70% of such a crop kept); on every pixel there are enough, and
    its smoothed blobs stand under one deviation out, so the cut keeps none of them."""
    raw = tifffile.imread(shared_data / "ctc" / "Fluo-N2DL-HeLa" / "01" / "t004.tif")
    crop = normalise(raw[408:432, 587:611][None].astype(np.float32), 1.0, 99.8)[0]
    smooth = ndi.gaussian_filter(crop, 3)
    junk = ndi.label(smooth > np.median(smooth))[0]
    assert junk.max() >= 1
    contrast = object_contrast(junk, crop)[1:]
    assert not np.isinf(contrast).any() and np.nanmax(contrast) < 1.0
    post = PostprocessConfig(min_object_size=5, min_relative_size=0.0)
    assert drop_small_objects(junk, post, crop).max() == 0
