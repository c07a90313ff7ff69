"""Flat regions at a channel's extremes, far outside the rest of the field: padding (zeros that
registration, drift correction, rotation or stitching leave where the field has no pixels, far
below a camera's offset) and burned-in marks (a scale bar or a label at the format's maximum).
Where they cover more than a normalisation percentile's share (1% at the bottom, 0.2% at the
top), that percentile is theirs: a tenth of a HeLa frame zeroed left its background near the
top of the range, a scale bar on 0.3% of a GOWT1 frame its nuclei at the bottom, and the
network or the watershed found nothing (docs/experiments.md, "Padding, scale bars, debris and
colour JPEGs"). `clip_flat_regions` runs before every normalisation
(`pipeline.preprocess.samples.normalise`).
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.preprocess.hot_pixels import PERCENTILES, sampled

# A flat region passes three tests (`clip_flat_regions`):
# 1. solid: at least MIN_SHARE of the field at the channel's minimum (maximum), and at least
#    SOLID of those pixels with all 8 neighbours at it too (a dim background's zeros are
#    scattered among its lowest levels, enlarged x2 too; a scale bar 5 px thick is 60% core;
#    padding takes the 1st percentile from 1% of a field on, 10 rows of 1024 px);
MIN_SHARE = 0.001
SOLID = 0.5
# 2. that extreme more than GAP x the rest's PERCENTILES range outside the rest's percentile
#    at that end (saturated nuclei have rims all the way up: the rest reaches the maximum);
GAP = 0.5
# 3. the rest mostly background: its median within BACKGROUND x that range of its low
#    percentile (on a black background with bright objects the rest is the objects).
BACKGROUND = 0.25


def clip_flat_regions(channel: np.ndarray) -> np.ndarray:
    """The (H, W) `channel` with its flat regions at the minimum set to the rest's low
    percentile and those at the maximum to its high one (PERCENTILES), so that the
    normalisation's range is the rest's: padding becomes the darkest background, a scale bar
    the brightest signal. A flat region is every pixel at that extreme, when it passes the
    three tests above. Real fields do not: a camera's noise scatters its darkest levels
    (GOWT1's 8-bit zeros sit among ones, an 8-bit gamma export's among 36s), saturated nuclei
    have rims up to the maximum, and on a black background the rest is the objects. The
    channel itself, not a copy, when nothing is clipped; a new array of the same dtype
    otherwise."""
    if channel.ndim != 2:
        raise ValueError(f"clip_flat_regions expects an (H, W) channel, got {channel.shape}")
    if channel.dtype.kind not in "uif" or channel.size == 0:
        return channel
    flats = [(at, mask) for at in (channel.min(), channel.max()) if _solid(mask := channel == at)]
    if not flats:
        return channel
    outside = np.logical_or.reduce([sampled(mask) for _, mask in flats])
    rest = sampled(channel)[~outside]  # the percentiles the hot pixels are read by, too
    if rest.size == 0:
        return channel
    lo, median, hi = (float(v) for v in np.percentile(rest, (PERCENTILES[0], 50.0, PERCENTILES[1])))
    span = hi - lo
    if not span > 0 or median - lo > BACKGROUND * span:
        return channel
    out = channel
    for at, mask in flats:
        edge = lo if at < lo else hi
        if abs(float(at) - edge) > GAP * span:
            out = channel.copy() if out is channel else out
            out[mask] = np.asarray(edge).astype(channel.dtype)
    return out


def _solid(mask: np.ndarray) -> bool:
    """Whether the (H, W) boolean `mask` is solid (MIN_SHARE, SOLID); the image's outside
    counts as part of it (padding at an edge)."""
    count = np.count_nonzero(mask)
    if count < MIN_SHARE * mask.size:
        return False
    core = cv2.erode(mask.view(np.uint8), np.ones((3, 3), np.uint8))
    return np.count_nonzero(core) >= SOLID * count
