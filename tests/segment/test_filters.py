"""The OpenCV filters give SciPy's and scikit-image's answers (pipeline.segment.filters)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi
from skimage.morphology import h_maxima as reconstructed
from skimage.segmentation import find_boundaries, watershed

from pipeline.segment.filters import (
    background,
    edt,
    fill_holes,
    flood,
    gaussian,
    h_maxima,
    inner_boundaries,
    label_sparse,
    parts,
)

RNG = np.random.default_rng(0)
SHAPES = [(1, 1), (1, 9), (7, 3), (40, 33)]


def exact_edt(mask: np.ndarray) -> np.ndarray:
    """The square root, in float32, of the integer squared distance to the False pixel SciPy
    finds nearest: what edt promises, to the bit."""
    if mask.all():
        return ndi.distance_transform_edt(mask).astype(np.float32)
    nearest = ndi.distance_transform_edt(mask, return_distances=False, return_indices=True)
    squares = ((nearest - np.indices(mask.shape)) ** 2).sum(axis=0)
    return np.sqrt(squares.astype(np.float32))


def disks(shape: tuple[int, int], n: int) -> np.ndarray:
    """A sparse (H, W) bool field of `n` random disks, some touching, some at the edge."""
    rows, cols = np.indices(shape)
    mask = np.zeros(shape, bool)
    centres = [RNG.integers(0, side, n) for side in shape]
    for y, x, r in zip(*centres, RNG.integers(2, 12, n), strict=True):
        mask |= (rows - y) ** 2 + (cols - x) ** 2 <= r**2
    return mask


@pytest.mark.parametrize("shape", SHAPES + [(30, 512), (9, 1024)])
def test_the_distance_transform_is_scipys(shape):
    for fill in (0.3, 0.9, 1.0, 0.0):
        mask = RNG.random(shape) < fill  # 1.0: no background, where OpenCV has no answer
        got = edt(mask)
        assert got.dtype == np.float32 and np.array_equal(got, exact_edt(mask))
        assert np.array_equal(edt(mask, dtype=np.float64), ndi.distance_transform_edt(mask))


@pytest.mark.parametrize("shape", [(120, 200), (64, 512), (300, 1024)])
def test_part_by_part_and_whole_field_distances_are_the_same(shape, monkeypatch):
    import pipeline.segment.filters as filters

    for mask in (disks(shape, 6), disks(shape, 30), ~disks(shape, 6)):
        by_parts = edt(mask, parts(mask))  # part by part where the disks are sparse
        monkeypatch.setattr(filters, "PART_COST_PX", mask.size)  # now: the whole field
        whole = edt(mask)
        monkeypatch.undo()
        assert np.array_equal(by_parts, whole) and np.array_equal(whole, exact_edt(mask))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sigma", [0.0, 0.4, 1.0, 4.3, 12.0])
def test_the_blur_is_scipys_up_to_float32_rounding(shape, sigma):
    image = RNG.random(shape)
    want = ndi.gaussian_filter(image.astype(np.float32), sigma)
    assert np.allclose(gaussian(image, sigma), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_sparse_masks_are_labelled_as_scipy_labels_them(shape):
    for fill in (0.0, 0.01, 0.05, 0.3, 1.0):  # isolated pixels, then touching ones
        mask = RNG.random(shape) < fill
        labels, n = label_sparse(mask)
        want, m = ndi.label(mask)
        assert labels.dtype == np.int32 and n == m and np.array_equal(labels, want)
    wrap = np.zeros((3, 4), bool)
    wrap[0, -1] = wrap[1, 0] = wrap[2, 1] = True  # a row's end and the next row's start, a diagonal
    assert np.array_equal(label_sparse(wrap)[0], ndi.label(wrap)[0]) and label_sparse(wrap)[1] == 3
    with pytest.raises(ValueError, match="bool"):
        label_sparse(np.ones((3, 3), np.uint8))


@pytest.mark.parametrize("shape", SHAPES)
def test_holes_are_filled_as_scipy_fills_them(shape):
    for fill in (0.0, 0.5, 0.7, 1.0):
        mask = RNG.random(shape) < fill
        assert np.array_equal(fill_holes(mask), ndi.binary_fill_holes(mask))


def same_parts(got: np.ndarray, n: int, want: np.ndarray, m: int) -> bool:
    """Whether two labellings (0 = background) cut the same parts, whatever their numbers."""
    pairs = np.unique(np.stack([got.ravel(), want.ravel()]), axis=1)
    return n == m and np.array_equal(got == 0, want == 0) and pairs.shape[1] == n + (got == 0).any()


@pytest.mark.parametrize("shape", SHAPES)
def test_parts_are_scipys_whatever_their_numbers(shape):
    for fill in (0.0, 0.3, 0.6, 1.0):
        mask = RNG.random(shape) < fill
        found = parts(mask)
        got, n = found.labels, found.n
        assert got.dtype == np.int32 and same_parts(got, n, *ndi.label(mask))
        assert found.boxes == ndi.find_objects(got) and len(found.grown_boxes) == n
        for box, grown in zip(found.boxes, found.grown_boxes, strict=True):
            for b, g, size in zip(box, grown, shape, strict=True):  # 1 px more, within the field
                assert (g.start, min(g.stop, size)) == (max(b.start - 1, 0), min(b.stop + 1, size))


def fields(n: int):
    """`n` (30, 40) float32 fields of each kind h-maxima meets: smooth noise, one bump, two
    bumps of unequal height, quantised (plateaus) and bumps with holes of zeros."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:30, :40]
    for _ in range(n):
        bump = np.exp(-((yy - rng.uniform(0, 30)) ** 2 + (xx - rng.uniform(0, 40)) ** 2) / 80)
        other = np.exp(-((yy - 15) ** 2 + (xx - rng.uniform(0, 40)) ** 2) / 50)
        yield ndi.gaussian_filter(rng.random((30, 40)), rng.uniform(1, 6))
        yield bump
        yield bump + rng.uniform(0.3, 1) * other
        yield np.round(ndi.gaussian_filter(rng.random((30, 40)), 4) * 50) / 50
        yield np.where(rng.random((30, 40)) < 0.3, 0, np.round(bump * rng.integers(2, 20)) / 7)


def test_h_maxima_are_scikit_images_whether_one_maximum_or_many():
    for field in fields(40):
        for h in (0.001, 0.01, 0.05, 0.2):
            image = field.astype(np.float32)
            assert np.array_equal(h_maxima(image, h), reconstructed(image, h).astype(bool))


def test_the_flood_is_scikit_images_watershed_on_fields_without_ties():
    rng = np.random.default_rng(2)
    for k in range(300):
        shape = tuple(rng.integers(1, 40, 2))
        mask = rng.random(shape) < rng.uniform(0.2, 0.9)
        mask = ndi.binary_opening(mask) if k % 2 else mask  # blobs, or scattered pixels
        seeds = rng.random(shape) < rng.uniform(0.0, 0.2)  # outside the mask too: ignored
        markers = ndi.label(seeds)[0] if k % 3 else np.where(seeds, rng.integers(1, 4, shape), 0)
        surface = rng.random(shape).astype(np.float32)  # continuous: no two pixels tie
        got = flood(surface, markers, mask)
        assert got.dtype == np.int32
        assert np.array_equal(got, watershed(surface, markers, mask=mask))


def test_a_part_with_one_label_is_that_label_and_one_without_stays_empty():
    mask = np.zeros((5, 9), bool)
    mask[1:4, 1:4] = mask[1:4, 5:8] = True  # two parts
    markers = np.zeros((5, 9), int)
    markers[1, 1] = markers[3, 3] = 7  # one label, two pixels, in the first part only
    markers[0, 6] = 9  # outside the mask
    want = np.where(mask[:, :4], 7, 0)
    got = flood(np.zeros((5, 9)), markers, mask)
    assert np.array_equal(got[:, :4], want) and not got[:, 4:].any()
    with pytest.raises(ValueError, match=r"\(5, 9\) \(5, 8\) \(5, 9\)"):
        flood(np.zeros((5, 9)), markers[:, :8], mask)


@pytest.mark.parametrize("width", [1, 2, 3])
def test_outlines_are_scikit_images_inner_boundaries_thickened_as_before(width):
    labels = ndi.label(RNG.random((40, 33)) < 0.6)[0]
    labels[labels == 3] = 70000  # past uint16
    want = find_boundaries(labels, mode="inner")
    want = ndi.binary_dilation(want, iterations=width - 1) if width > 1 else want
    assert np.array_equal(inner_boundaries(labels, width), want)


def test_on_a_real_annotation(shared_data):
    labels = tifffile.imread(
        shared_data / "ctc" / "Fluo-N2DL-HeLa" / "01_ST" / "SEG" / "man_seg004.tif"
    )
    assert np.array_equal(
        inner_boundaries(labels, 3),
        ndi.binary_dilation(find_boundaries(labels, mode="inner"), iterations=2),
    )
    fg = labels > 0
    assert np.array_equal(edt(fg), exact_edt(fg)) and np.array_equal(edt(~fg), exact_edt(~fg))
    assert np.array_equal(edt(fg, dtype=np.float64), ndi.distance_transform_edt(fg))
    for mask in (fg, ~fg):
        found = parts(mask)
        assert same_parts(found.labels, found.n, *ndi.label(mask))


@pytest.mark.parametrize("step", [1, 4, 8])
def test_the_background_is_the_glow_under_the_objects_without_them(step):
    # squares 30 px a side, 0.8 bright, on a broad glow from 0.2 to 0.7: the background is the
    # glow (to a tenth of the squares' brightness), not the squares (under the window), so the
    # image less it holds the squares on a flat floor; smaller than the window, a field's
    # background is nearly flat
    rows, cols = np.indices((300, 420))
    glow = 0.2 + 0.5 * np.exp(-((rows - 150) ** 2 + (cols - 200) ** 2) / (2 * 120.0**2))
    squares = (rows % 60 < 30) & (cols % 60 < 30)
    image = (glow + 0.8 * squares).astype(np.float32)
    found = background(image, 96, step)
    assert found.shape == image.shape and found.dtype == np.float32
    assert np.abs(found - glow).max() < 0.1
    flat = image - found
    assert flat[~squares].max() < 0.1 and flat[squares].min() > 0.7
    small = background(image[:40, :40], 96, step)
    assert np.ptp(small) < 0.02 and small.max() <= image[:40, :40].max()


def test_bad_shapes_are_refused_with_the_shape():
    with pytest.raises(ValueError, match=r"\(3,\), 8, 0"):
        background(np.ones(3), 8, 0)
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        edt(np.ones((2, 3, 4), bool))
    with pytest.raises(ValueError, match="float16"):
        edt(np.ones((3, 3), bool), dtype=np.float16)
    with pytest.raises(ValueError, match="sigma >= 0"):
        gaussian(np.ones((3, 3)), -1.0)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        fill_holes(np.ones(3, bool))
    with pytest.raises(ValueError, match=r"uint8 \(3, 3\)"):
        parts(np.ones((3, 3), np.uint8))
    with pytest.raises(ValueError, match="float32 image and h > 0"):
        h_maxima(np.ones((3, 3)), 0.1)
    with pytest.raises(ValueError, match="width >= 1"):
        inner_boundaries(np.ones((3, 3), int), 0)
