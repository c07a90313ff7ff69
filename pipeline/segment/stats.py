"""Robust statistics the post-processing and the size measure read off a field: the typical
object's area and a weighted median, which specks barely move, and the spread of values with
outliers among them (the background's noise with objects in it)."""

from __future__ import annotations

import numpy as np


def typical_area(areas: np.ndarray) -> float:
    """The area of the object a random foreground pixel lies in (the area-weighted median of
    the (N,) object `areas`, N >= 1): specks, however many, barely move it, where the plain
    median of a field with more specks than nuclei is a speck."""
    if areas.ndim != 1 or not areas.size or (areas <= 0).any():
        raise ValueError(f"typical_area needs the areas of one or more objects, got {areas!r}")
    return weighted_median(areas, areas)


# a normal distribution's standard deviation per median absolute deviation
MAD_TO_SD = 1.4826


def robust_deviation(
    values: np.ndarray, level: np.ndarray | float, axis: int | None = None
) -> np.ndarray:
    """The standard deviation of `values` read robustly, as outliers (objects among background
    pixels) leave it: MAD_TO_SD x their median absolute deviation from `level` (their median,
    shaped to broadcast against them) along `axis` (all of them when None)."""
    return MAD_TO_SD * np.median(np.abs(values - level), axis=axis)


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The smallest of the (N,) `values` (N >= 1) at or below which half of the total of the
    (N,) non-negative `weights` lies."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])
