"""Colour images as one channel: a grey image stored as colour, a false-colour lookup, and
composites of several stains, which one channel cannot hold (`colour_stains` tells them)."""

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
    (`colour_stains`); with the image's `path` given, a warning names it and the fix: give the
    channel of the objects (`cellseg predict --channel`) or as an image of its own."""
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and channels_last(arr):
        if path is not None and len(stains := colour_stains(arr)) > 1:
            log.warning(
                "%s: %s apart (a composite of stains, or a lookup of several colours such as "
                "Fire), read as the largest of them at each pixel; for one stain give its "
                "channel (cellseg predict --channel K: 0 red, 1 green, 2 blue), or save the "
                "grey data as an image of its own",
                path,
                " and ".join(stains),
            )
        return arr[..., :3].max(axis=-1)
    return arr


COLOURS = ("red", "green", "blue")
STAIN_MARGIN = 0.1  # of the image's range: a colour that clearly holds a pixel's brightest value
STAIN_SHARE = 0.01  # of its pixels (every 4th row and column)


def colour_stains(arr: np.ndarray) -> list[str]:
    """The colours of an (H, W, 3) or (H, W, 4) image that each hold the brightest value, by more
    than STAIN_MARGIN of the image's range over the other two, on at least STAIN_SHARE of its
    pixels: none for grey stored as colour (or a magenta lookup, red and blue alike), one for a
    single-colour lookup, two or three for a composite of stains (nuclei in blue, cells in
    red)."""
    rgb = arr[::4, ::4, :3].astype(np.float32)
    span = float(rgb.max() - rgb.min())
    if not span > 0:
        return []
    ordered = np.sort(rgb, axis=-1)
    clear = ordered[..., 2] - ordered[..., 1] > STAIN_MARGIN * span
    top = rgb.argmax(axis=-1)
    enough = STAIN_SHARE * clear.size
    return [
        name for c, name in enumerate(COLOURS) if np.count_nonzero(clear & (top == c)) >= enough
    ]


def channels_last(arr: np.ndarray) -> bool:
    """Whether a 3-D image holds its channels on the last axis, (H, W, C): the smaller axis is
    the channels' (a colour image's 3 against its rows and columns)."""
    return arr.ndim == 3 and arr.shape[-1] < min(arr.shape[:2])
