"""Hot pixels: single pixels far brighter than everything around them (a camera's defective
pixels, cosmic rays, salt noise). A few change nothing, but where more of them than the
normalisation's top percentile (0.2% of the pixels at 99.8) sit above the nuclei, that
percentile is theirs and the nuclei are squeezed into the bottom of the range: at 0.5% of the
pixels, 4x the 99.99th percentile, the network's F1 fell to 0.600 on GOWT1 and 0.316 on HeLa
(docs/experiments.md, "Hot pixels removed before the normalisation"). `remove_hot_pixels` runs
before every normalisation (`pipeline.preprocess.samples.normalise`), in training and in
prediction alike.
"""

from __future__ import annotations

import cv2
import numpy as np

# the 8 neighbours of a pixel, not the pixel
RING = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], np.uint8)
OPENCV_DTYPES = (np.uint8, np.uint16, np.int16, np.float32, np.float64)  # cv2.dilate's
STEP = 4  # percentiles are read on every STEP-th row and column of fields this large
STEP_FROM = 256  # (px a side; smaller ones on every pixel): `sampled`
# the range a hot pixel stands above its neighbours by: these percentiles, whatever the
# normalisation's (a narrow window, such as the 33rd to 67th, would take noise for hot pixels)
PERCENTILES = (1.0, 99.8)


def remove_hot_pixels(channel: np.ndarray) -> np.ndarray:
    """The (H, W) `channel` with each pixel that stands more than the channel's PERCENTILES
    range above the brightest of its 8 neighbours set to their median (the range measured
    with every such peak clipped to its neighbours, so that hot pixels do not widen it; on
    every STEP-th row and column of a field STEP_FROM px a side or more). Real structure
    never does that: a nucleus (10 px or more across) has neighbours as bright as its
    brightest pixel, and on the 66 CTC frames 8 pixels did, one or two in 7 GOWT1 frames, each
    alone. The channel itself, not a copy, when no pixel does (or the range is empty: a flat
    field is left as it is); a new array of the same dtype otherwise. Pairs of hot pixels
    side by side are kept."""
    if channel.ndim != 2:
        raise ValueError(f"remove_hot_pixels expects an (H, W) channel, got {channel.shape}")
    if channel.dtype.kind not in "uif" or min(channel.shape) < 3:  # no pixel has 8 neighbours
        return channel
    work = channel if channel.dtype in OPENCV_DTYPES else channel.astype(np.float64)
    around = cv2.dilate(work, RING)  # the brightest neighbour (outside the image: none)
    excess = cv2.subtract(work, around)  # saturates at 0 for unsigned types
    top = excess.max()
    if not top > 0:
        return channel
    clipped = np.minimum(sampled(work), sampled(around))
    lo, hi = np.percentile(clipped, PERCENTILES)
    span = float(hi) - float(lo)
    if not span > 0 or top <= span:
        return channel
    rows, cols = np.nonzero(excess > span)
    padded = np.pad(work, 1, mode="edge")  # a pixel on the edge: its own row or column again
    ring = np.stack([padded[rows + dy, cols + dx] for dy, dx in np.argwhere(RING)])
    out = channel.copy()
    out[rows, cols] = np.median(ring, axis=0).astype(channel.dtype)
    return out


def sampled(array: np.ndarray) -> np.ndarray:
    """The (H, W) `array` on every STEP-th row and column when it is STEP_FROM px a side or
    more (its percentiles, read on a sixteenth of the pixels), else as it is (a view)."""
    return array[::STEP, ::STEP] if min(array.shape) >= STEP_FROM else array
