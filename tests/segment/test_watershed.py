import numpy as np
import pytest

from pipeline.config import WatershedConfig
from pipeline.segment.watershed import split_foreground


def _two_touching_cells() -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:64, :96]
    a, b = np.hypot(yy - 32, xx - 30) < 16, np.hypot(yy - 32, xx - 58) < 16
    image = np.zeros((2, 64, 96), np.float32)
    image[0][a | b] = 0.6  # c1: one merged blob
    image[1][np.hypot(yy - 32, xx - 30) < 6] = 1.0  # c5: a nucleus in each cell
    image[1][np.hypot(yy - 32, xx - 58) < 6] = 1.0
    return a | b, image


def test_given_foreground_is_split_at_the_nuclei():
    fg, image = _two_touching_cells()
    labels = split_foreground(fg, image, ["c1", "c5"], "c1", "cells", WatershedConfig())
    assert labels.dtype == np.int32 and set(np.unique(labels)) == {0, 1, 2}
    assert (labels > 0).sum() == fg.sum()  # the foreground is kept, only split
    assert labels[32, 30] != labels[32, 58]


def test_nuclei_split_by_distance_peaks():
    fg, image = _two_touching_cells()
    cfg = WatershedConfig(min_distance=10)
    labels = split_foreground(fg, image[:1], ["fluo"], "fluo", "nuclei", cfg)
    assert labels.max() == 2


def test_shape_mismatch_is_reported():
    fg, image = _two_touching_cells()
    with pytest.raises(ValueError, match=r"foreground shape \(64, 95\)"):
        split_foreground(fg[:, :95], image, ["c1", "c5"], "c1", "cells", WatershedConfig())
