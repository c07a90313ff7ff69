"""The robust statistics of `pipeline.segment.stats` on values whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.segment.stats import robust_deviation, typical_area, weighted_median


def test_the_typical_area_is_that_of_the_object_a_random_foreground_pixel_lies_in():
    assert typical_area(np.array([2800, 25, 25, 25])) == 2800  # the plain median: 25
    assert typical_area(np.array([30, 30, 30])) == 30
    with pytest.raises(ValueError, match="one or more objects, got array.."):
        typical_area(np.array([], np.int64))
    with pytest.raises(ValueError, match="one or more objects"):
        typical_area(np.array([10, 0]))


def test_the_weighted_median_is_where_half_the_weight_lies():
    values = np.array([3.0, 1.0, 2.0])
    assert weighted_median(values, np.ones(3)) == 2.0
    assert weighted_median(values, np.array([10.0, 1.0, 1.0])) == 3.0
    assert weighted_median(values, np.array([0.0, 5.0, 1.0])) == 1.0


def test_the_robust_deviation_is_a_normal_noise_s_width_whatever_the_outliers():
    rng = np.random.default_rng(0)
    noise = rng.normal(10.0, 2.0, 100_000)
    with_objects = np.concatenate([noise, np.full(5_000, 500.0)])  # a twentieth: bright objects
    assert robust_deviation(noise, 10.0) == pytest.approx(2.0, rel=0.02)
    assert robust_deviation(with_objects, np.median(noise)) == pytest.approx(2.0, rel=0.1)
    assert np.std(with_objects) > 50  # the plain standard deviation: the objects
    rows = np.stack([noise[:1000], 3 * noise[1000:2000]])
    widths = robust_deviation(rows, np.median(rows, axis=1)[:, None], axis=1)
    assert widths.shape == (2,) and widths[1] == pytest.approx(3 * widths[0], rel=0.2)
