"""Every step `normalise` runs on a channel first (`samples.CLEANERS`) leaves flat, tiny,
empty and boolean channels as they are, and refuses anything but (H, W)."""

import numpy as np
import pytest

from pipeline.preprocess.samples import CLEANERS


@pytest.mark.parametrize("clean", CLEANERS, ids=lambda f: f.__name__)
def test_flat_tiny_and_non_numeric_channels_are_left_as_they_are(clean):
    flat = np.zeros((32, 32), np.uint16)
    flat[4, 4] = 9  # the 1st to 99.8th percentile range is empty: nothing to compare with
    for channel in (
        flat,
        np.zeros((32, 32), np.float32),
        np.ones((1, 1), np.float32),
        np.zeros((0, 4), np.float32),
        np.zeros((8, 8), bool),
    ):
        assert clean(channel) is channel
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        clean(np.zeros((2, 8, 8)))
