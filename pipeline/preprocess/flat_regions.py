"""Flat regions at a channel's extremes, far outside the rest of the field: padding (zeros that
registration, drift correction, rotation or stitching leave where the field has no pixels, far
below a camera's offset) and burned-in marks (a scale bar or a label at the format's maximum).
Where they cover more than a normalisation percentile's share (1% at the bottom, 0.2% at the
top), that percentile is theirs: a tenth of a HeLa frame zeroed left its background near the
top of the range, a scale bar on 0.3% of a GOWT1 frame its nuclei at the bottom, and the
network or the watershed found nothing (docs/experiments.md, "Padding, scale bars, debris and
colour JPEGs"). A mark drawn as a filled rectangle at the maximum (a scale bar) and its label
become the background: clipped to the bright end, the network drew them as objects ("Scale
bars as background"); so do glyphs, burned-in text away from a bar ("Burned-in text").
`clip_flat_regions` runs before every normalisation (`pipeline.preprocess.samples.normalise`).
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
# A mark: a component of the pixels at the maximum that fills its bounding box exactly, at
# least MARK_SIDE px on each side and MARK_SHARE of the field (a scale bar 5 px thick on 0.1%
# of a GOWT1 frame; saturated nuclei are not rectangles, lone or paired hot pixels too small).
# It becomes the background (the rest's low percentile), even below MIN_SHARE.
MARK_SIDE = 3
MARK_SHARE = 0.0001
# Its label: the other components at the maximum, each no larger than the mark, whose box
# comes within LABEL_GAP x the mark's short side (LABEL_GAP_MIN px or more) of the mark's (a
# "10 um" beside the bar): the background too, with every pixel above the rest's bright end
# connected to them (anti-aliased edges and strokes).
LABEL_GAP = 2
LABEL_GAP_MIN = 8
# A glyph (burned-in text away from a bar: a time stamp, a panel letter) counts as a mark: a
# component at the maximum at least GLYPH_LONG px on its longer side with sharp edges: the
# median 2-GLYPH_RING px outside it within GLYPH_EDGE x the rest's PERCENTILES range of its
# low end, on the background (the optics blur a saturated cell's plateau into a ramp: 0.5-0.7
# of that range there on a real HeLa frame), and drawn in strokes: no pixel of it further
# than 1/GLYPH_THIN of its longer side from its edge (a "0" 22 px high has strokes 4 px from
# theirs, a round plateau is half its side from it).
# A time stamp on 0.24% of a HeLa frame was the 99.8th percentile, and the network's F1 fell
# from 0.94 to 0.35 ("Burned-in text").
GLYPH_LONG = 8
GLYPH_RING = 3
GLYPH_EDGE = 0.25
GLYPH_THIN = 3


def clip_flat_regions(channel: np.ndarray) -> np.ndarray:
    """The (H, W) `channel` with its flat regions at the minimum set to the rest's low
    percentile and those at the maximum to its high one (PERCENTILES), so that the
    normalisation's range is the rest's: padding becomes the darkest background, the
    brightest pixels the brightest signal, and marks (filled rectangles at the maximum: a
    scale bar; glyphs with sharp edges: a time stamp) with their labels and edges the darkest
    background too. A flat region is every pixel at that extreme, when it passes the three
    tests above (a mark the last two). Real fields do not: a camera's noise scatters its
    darkest levels (GOWT1's 8-bit zeros sit among ones, an 8-bit gamma export's among 36s),
    saturated nuclei have rims up to the maximum, and on a black background the rest is the
    objects. The channel itself, not a copy, when nothing is clipped; a new array of the same
    dtype otherwise."""
    if channel.ndim != 2:
        raise ValueError(f"clip_flat_regions expects an (H, W) channel, got {channel.shape}")
    if channel.dtype.kind not in "uif" or channel.size == 0:
        return channel
    flats = []  # (the extreme, its pixels to clip, the marks among them or None)
    for at, top in ((channel.min(), False), (channel.max(), True)):
        mask = channel == at
        marks = _marks(channel, mask, float(at)) if top else None
        if _solid(mask):
            flats.append((at, mask, marks))
        elif marks is not None:
            flats.append((at, marks, marks))
    if not flats:
        return channel
    rest = _rest(channel, np.logical_or.reduce([mask for _, mask, _ in flats]))
    if rest is None:
        return channel
    lo, median, hi = rest
    if not hi > lo or median - lo > BACKGROUND * (hi - lo):
        return channel
    out = channel
    for at, mask, marks in flats:
        if _stands_out(float(at), lo, hi):
            out = channel.copy() if out is channel else out
            out[mask] = np.asarray(lo if at < lo else hi).astype(channel.dtype)
            if marks is not None:
                out[_above(channel, hi, marks)] = np.asarray(lo).astype(channel.dtype)
    return out


def _marks(channel: np.ndarray, mask: np.ndarray, at: float) -> np.ndarray | None:
    """The pixels of the (H, W) boolean `mask` (where the (H, W) `channel` is at its maximum,
    `at`) that are marks: its 8-connected components that fill their bounding box (MARK_SIDE,
    MARK_SHARE) or are glyphs (GLYPH_LONG, GLYPH_RING, GLYPH_EDGE, GLYPH_THIN), and their
    labels (LABEL_GAP); None when it has none. The components are labelled only within the
    bounding box of the mask, and only when it holds GLYPH_LONG pixels."""
    if np.count_nonzero(mask) < GLYPH_LONG:
        return None
    whole = mask.view(np.uint8)
    x, y, w, h = cv2.boundingRect(whole)
    pixels = whole[y : y + h, x : x + w]
    _, labels, stats, _ = cv2.connectedComponentsWithStats(pixels, connectivity=8)
    width, height = stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]
    area = stats[1:, cv2.CC_STAT_AREA]
    mark = (area == width * height) & (np.minimum(width, height) >= MARK_SIDE)
    mark &= area >= MARK_SHARE * mask.size
    long = (np.maximum(width, height) >= GLYPH_LONG) & ~mark
    mark |= _glyphs(channel, mask, at, labels, stats, long, (x, y))
    if not mark.any():
        return None
    left, top = stats[1:, cv2.CC_STAT_LEFT], stats[1:, cv2.CC_STAT_TOP]
    for i in np.flatnonzero(mark):
        gap = max(LABEL_GAP * min(width[i], height[i]), LABEL_GAP_MIN)
        apart_x = np.maximum(left - (left[i] + width[i]), left[i] - (left + width))
        apart_y = np.maximum(top - (top[i] + height[i]), top[i] - (top + height))
        mark |= (np.maximum(apart_x, apart_y) < gap) & (area <= area[i])
    marks = np.zeros_like(mask)
    marks[y : y + h, x : x + w] = np.concatenate([[False], mark])[labels]
    return marks


def _glyphs(
    channel: np.ndarray,
    mask: np.ndarray,
    at: float,
    labels: np.ndarray,
    stats: np.ndarray,
    candidates: np.ndarray,
    origin: tuple[int, int],
) -> np.ndarray:
    """(N,) bool: which `candidates` of the N components (`labels` and `stats`, of the box at
    `origin` (x, y) of the (H, W) bool `mask`, the pixels at the maximum `at`) are glyphs:
    with sharp edges (the median of the (H, W) `channel` 2 to GLYPH_RING px outside each, past
    an anti-aliased edge, within GLYPH_EDGE x the PERCENTILES range of the pixels off the mask
    of its low end) and drawn in strokes (GLYPH_THIN)."""
    glyph = np.zeros(len(candidates), bool)
    if not candidates.any():
        return glyph
    rest = _rest(channel, mask)
    if rest is None or not _stands_out(at, rest[0], rest[2]):  # not clipped (saturated nuclei)
        return glyph
    low, _, high = rest
    edge = low + GLYPH_EDGE * (high - low)
    rows, cols = mask.shape
    for i in np.flatnonzero(candidates):
        left, top, w, h = stats[i + 1, :4]
        x0, y0 = max(origin[0] + left - GLYPH_RING, 0), max(origin[1] + top - GLYPH_RING, 0)
        x1 = min(origin[0] + left + w + GLYPH_RING, cols)
        y1 = min(origin[1] + top + h + GLYPH_RING, rows)
        part = mask[y0:y1, x0:x1].view(np.uint8)
        near = cv2.dilate(part, np.ones((2 * GLYPH_RING + 1,) * 2, np.uint8))
        ring = near > cv2.dilate(part, np.ones((3, 3), np.uint8))  # 2 to GLYPH_RING px out
        if not (ring.any() and np.median(channel[y0:y1, x0:x1][ring]) < edge):
            continue
        own = np.pad(labels[top : top + h, left : left + w] == i + 1, 1).view(np.uint8)
        radius = cv2.distanceTransform(own, cv2.DIST_L2, 3).max()  # half its thickest stroke
        glyph[i] = radius <= max(w, h) / GLYPH_THIN
    return glyph


def _rest(channel: np.ndarray, outside: np.ndarray) -> tuple[float, float, float] | None:
    """The (low PERCENTILES, median, high PERCENTILES) values of the (H, W) `channel`'s pixels
    off the (H, W) boolean `outside`, read as the hot pixels' range is (`sampled`); None when
    no pixel is left."""
    rest = sampled(channel)[~sampled(outside)]
    if not rest.size:
        return None
    lo, median, hi = np.percentile(rest, (PERCENTILES[0], 50.0, PERCENTILES[1]))
    return float(lo), float(median), float(hi)


def _stands_out(at: float, lo: float, hi: float) -> bool:
    """Whether an extreme value `at` lies more than GAP x the rest's range (`lo`..`hi`) outside
    the rest's percentile at its end (`lo` below it, `hi` above)."""
    return abs(at - (lo if at < lo else hi)) > GAP * (hi - lo)


def _above(channel: np.ndarray, high: float, marks: np.ndarray) -> np.ndarray:
    """The (H, W) boolean mask of the 8-connected components of `channel` above `high` that
    hold a pixel of `marks` (a mark, its label and their anti-aliased edges)."""
    _, parts = cv2.connectedComponents((channel > high).view(np.uint8), connectivity=8)
    hit = np.zeros(int(parts.max()) + 1, bool)
    hit[parts[marks]] = True
    hit[0] = False
    return hit[parts]


def _solid(mask: np.ndarray) -> bool:
    """Whether the (H, W) boolean `mask` is solid (MIN_SHARE, SOLID); the image's outside
    counts as part of it (padding at an edge)."""
    count = np.count_nonzero(mask)
    if count < MIN_SHARE * mask.size:
        return False
    core = cv2.erode(mask.view(np.uint8), np.ones((3, 3), np.uint8))
    return np.count_nonzero(core) >= SOLID * count
