"""The strong classical method: denoise, threshold, clean up, marker-controlled watershed.

Steps on one (C, H, W) raw image (parameters from `WatershedConfig`, lengths in pixels):

1. Denoise: percentile-normalise the method channel to [0, 1] and Gaussian-blur it
   (``sigma``).
2. Threshold: a global scikit-image threshold (``threshold``: otsu, li, triangle, yen
   or mean) gives the foreground.
3. Clean up: fill holes of at most ``max_hole_size`` px, drop objects smaller than
   ``min_object_size`` px.
4. Markers: for cells with a nucleus channel (``marker_channel``, e.g. BBBC020 c5)
   each thresholded nucleus is one marker, the nuclei join the foreground, and the watershed
   floods the Sobel gradient of the cell channel, so cells meet along intensity edges. Otherwise
   (nuclei, or no nucleus channel) markers are the peaks of the smoothed distance transform
   (``peak_sigma``), at least ``min_distance`` px apart, one or more per
   foreground component, and the watershed floods the negated distance map.
5. Foreground components without any marker are kept as one object each.

Output: (H, W) int32 instance labels, 0 = background, 1..N objects.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import filters
from skimage.feature import peak_local_max

from pipeline.config import WatershedConfig
from pipeline.config.sections import WATERSHED_THRESHOLDS as THRESHOLDS
from pipeline.preprocess.samples import normalise
from pipeline.segment.filters import edt, flood, parts


def _smooth(channel: np.ndarray, sigma: float) -> np.ndarray:
    img = normalise(channel[None], 1.0, 99.8)[0]
    return ndi.gaussian_filter(img, sigma) if sigma > 0 else img


def _foreground(img: np.ndarray, method: str) -> np.ndarray:
    if method not in THRESHOLDS:
        raise ValueError(f"watershed threshold={method!r}; choose one of {', '.join(THRESHOLDS)}")
    if img.max() == img.min():  # a flat image has no foreground
        return np.zeros(img.shape, bool)
    return img > getattr(filters, f"threshold_{method}")(img)


def drop_small(mask: np.ndarray, min_size: int) -> np.ndarray:
    """Boolean (H, W) `mask` without its 4-connected components of fewer than `min_size` px
    (`mask` itself when none is that small)."""
    found = parts(mask)
    labels, n = found.labels, found.n
    if n == 0 or min_size <= 1:
        return mask
    keep = np.bincount(labels[mask], minlength=n + 1) >= min_size  # counted where the parts are
    if keep[1:].all():
        return mask
    keep[0] = False
    return keep[labels]


def clean(mask: np.ndarray, max_hole: int, min_size: int) -> np.ndarray:
    """Fill background regions of at most `max_hole` px, then drop objects below `min_size`."""
    holes = ~mask & ~drop_small(~mask, max_hole + 1)
    return drop_small(mask | holes, min_size)


def _distance_markers(fg: np.ndarray, cfg: WatershedConfig) -> tuple[np.ndarray, np.ndarray]:
    dist = edt(fg, dtype=np.float64)  # SciPy's numbers, in a fraction of its time
    smooth = ndi.gaussian_filter(dist, cfg.peak_sigma) if cfg.peak_sigma else dist
    components, _ = ndi.label(fg)
    peaks = peak_local_max(
        smooth, min_distance=cfg.min_distance, labels=components, exclude_border=False
    )
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return markers, -smooth


def watershed_instances(
    raw: np.ndarray, channels: list[str], channel: str, target: str, cfg: WatershedConfig
) -> np.ndarray:
    """Instance labels (H, W) int32 for a (C, H, W) raw image (see the module docstring)."""
    if raw.ndim != 3 or raw.shape[0] != len(channels):
        raise ValueError(
            f"expected a (C, H, W) image with C={len(channels)} channels {channels}, "
            f"got shape {raw.shape}"
        )
    img = _smooth(raw[channels.index(channel)], cfg.sigma)
    fg = clean(_foreground(img, cfg.threshold), cfg.max_hole_size, cfg.min_object_size)
    return split_foreground(fg, raw, channels, channel, target, cfg, smoothed=img)


def split_foreground(
    fg: np.ndarray,
    raw: np.ndarray,
    channels: list[str],
    channel: str,
    target: str,
    cfg: WatershedConfig,
    smoothed: np.ndarray | None = None,
) -> np.ndarray:
    """Steps 4-5 on a given (H, W) bool foreground (from a threshold or a U-Net): markers, then
    the watershed. `raw` (C, H, W) may be raw or normalised intensities; `smoothed` is step 1's
    result for `channel` when the caller has it. Returns (H, W) int32 labels."""
    if fg.shape != raw.shape[1:]:
        raise ValueError(f"foreground shape {fg.shape} != image shape {raw.shape[1:]}")
    marker_ch = cfg.marker_channel
    if target == "cells" and marker_ch and marker_ch in channels and marker_ch != channel:
        img = smoothed if smoothed is not None else _smooth(raw[channels.index(channel)], cfg.sigma)
        nuc_img = _smooth(raw[channels.index(marker_ch)], cfg.sigma)
        nuclei = drop_small(_foreground(nuc_img, cfg.threshold), cfg.min_marker_size)
        fg = clean(fg | nuclei, cfg.max_hole_size, cfg.min_object_size)
        markers, _ = ndi.label(nuclei & fg)
        elevation = filters.sobel(img)
    else:
        markers, elevation = _distance_markers(fg, cfg)
    labels = flood(elevation, markers, fg)
    orphans, n = ndi.label(fg & (labels == 0))
    if n:
        orphans = np.where(drop_small(orphans > 0, cfg.min_object_size), orphans, 0)
        labels[orphans > 0] = orphans[orphans > 0] + labels.max()
    return labels
