"""Hot pixels are removed before the normalisation; real structure is not touched."""

import numpy as np
import pytest
import tifffile

from pipeline.preprocess.hot_pixels import remove_hot_pixels
from pipeline.preprocess.samples import normalise


def _nuclei(dtype=np.uint16) -> np.ndarray:
    """Discs 20 px across at 3000 on a background of 1000, with Poisson noise."""
    rows, cols = np.indices((128, 160))
    image = np.full((128, 160), 1000.0)
    for y, x in ((30, 30), (30, 100), (90, 60), (95, 130)):
        image[(rows - y) ** 2 + (cols - x) ** 2 < 10**2] = 3000.0
    return np.random.default_rng(0).poisson(image).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32])
def test_a_lone_bright_pixel_goes_and_the_nuclei_stay(dtype):
    image = _nuclei(np.uint16)
    if dtype == np.uint8:
        image = (image // 16).astype(np.uint8)  # 62 and 187: still far apart
    image = image.astype(dtype)
    hot = image.copy()
    top = np.iinfo(dtype).max if np.dtype(dtype).kind in "ui" else 60000
    hot[5, 7] = hot[64, 150] = top  # alone in the background
    hot[30, 30] = top  # in a nucleus (8-bit: 255 is not a whole range above it, kept)
    hot[110:112, 10:12] = top  # two by two: kept (not a lone pixel)
    out = remove_hot_pixels(hot)
    assert out.dtype == hot.dtype and out is not hot
    changed = np.argwhere(out != hot)
    expected = [(5, 7), (64, 150)] if dtype == np.uint8 else [(5, 7), (30, 30), (64, 150)]
    assert sorted(map(tuple, changed)) == expected
    for y, x in changed:  # set to its neighbours' median
        ring = np.delete(hot[y - 1 : y + 2, x - 1 : x + 2].ravel(), 4)
        assert out[y, x] == np.median(ring).astype(dtype)
    assert (out[110:112, 10:12] == top).all()
    assert remove_hot_pixels(image) is image  # nothing to remove: the same array


def test_many_hot_pixels_no_longer_take_the_normalisations_range(shared_data):
    # the real HeLa t089 with 0.5% of its pixels hot (4x its 99.99th percentile): they were
    # above the 99.8th percentile, the nuclei fell to the bottom of the range; now the
    # normalised image is the clean one but at the hot pixels, each its neighbours' median
    # (a few with a hot neighbour stay)
    raw = tifffile.imread(shared_data / "ctc" / "Fluo-N2DL-HeLa" / "01" / "t089.tif")
    assert remove_hot_pixels(raw) is raw  # a real frame: nothing to remove
    rng = np.random.default_rng(0)
    hot = raw.astype(np.float32)
    hit = rng.random(raw.shape) < 0.005
    hot[hit] = 4 * np.percentile(raw, 99.99)
    clean = normalise(raw[None], 1.0, 99.8)[0]
    low, high = np.percentile(hot, [1, 99.8])
    assert high == hot.max()  # the hot pixels own the top percentile
    assert np.median((hot[~hit] - low) / (high - low)) < 0.1  # the nuclei at the bottom
    fixed = normalise(hot[None], 1.0, 99.8)[0]
    assert np.array_equal(fixed, normalise(remove_hot_pixels(hot)[None], 1.0, 99.8)[0])
    assert np.abs(fixed - clean)[~hit].max() < 0.03  # the range within 3% of the clean one
    assert np.median(np.abs(fixed - clean)[hit]) < 0.05
