"""Colour images as one channel: a grey image stored as colour, a false-colour lookup, and
composites of several stains, which one channel cannot hold (`is_composite` tells them)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def colour_intensity(arr: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """(H, W, 3) or (H, W, 4) colour -> (H, W) intensity, the largest of R, G and B (a 4th
    channel, alpha, dropped): a grey image stored as colour gives its grey values, a
    false-colour lookup (BBBC020's, a green or magenta one) its intensities. Any other array is
    returned as it is. A composite of several stains in one colour image is merged by this
    (`is_composite`); with the image's `path` given, a warning names it and the fix: give the
    channel of the objects (`cellseg predict --channel`) or as an image of its own."""
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and channels_last(arr):
        if path is not None and is_composite(arr):
            log.warning(
                "%s: colours that vary apart (a composite of stains, or a lookup such as "
                "Fire), read as the largest of them at each pixel; for one stain give its "
                "channel (cellseg predict --channel K: 0 red, 1 green, 2 blue), or save the "
                "grey data as an image of its own",
                path,
            )
        return arr[..., :3].max(axis=-1)
    return arr


BRIGHT = 0.25  # of the image's range: the pixels whose colour is read
SPREAD = 0.5  # a colour's share of a pixel's brightest value varying this much: a composite
TAILS = (2.0, 98.0)  # percentiles of that share the spread is read between


def is_composite(arr: np.ndarray) -> bool:
    """Whether an (H, W, 3) or (H, W, 4) image holds several colours that vary apart: over its
    bright pixels (above BRIGHT of its range; every 4th row and column), a colour's share of the
    pixel's brightest value spreads by more than SPREAD between the TAILS percentiles. A grey
    image stored as colour, or a lookup of one colour (green; magenta; BBBC020's, red equal to
    green, or blue), keeps every share fixed; a composite of stains (cells in red and green,
    nuclei in blue, as BBBC020's merged files) or a lookup of several colours (Fiji's Fire)
    does not."""
    rgb = arr[::4, ::4, :3].astype(np.float32)
    top = rgb.max(axis=-1)
    lo, hi = np.percentile(top, (0.0, 99.9))
    bright = top > lo + BRIGHT * (hi - lo)
    if not hi > lo or np.count_nonzero(bright) < 16:
        return False
    shares = rgb[bright] / top[bright, None]
    low, high = np.percentile(shares, TAILS, axis=0)
    return bool((high - low > SPREAD).any())


def channels_last(arr: np.ndarray) -> bool:
    """Whether a 3-D image holds its channels on the last axis, (H, W, C): the smaller axis is
    the channels' (a colour image's 3 against its rows and columns)."""
    return arr.ndim == 3 and arr.shape[-1] < min(arr.shape[:2])
