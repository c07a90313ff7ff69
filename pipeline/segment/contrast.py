"""How far a field's objects stand out of the background around them, in noise deviations.

A field with no nuclei (an empty well, a tile of a slide away from the cells) is stretched by
the percentile normalisation until its noise and uneven illumination fill the whole range, and
the network then draws objects in it: on real background crops of the CTC HeLa frames, one to
five objects covering 38-83% of the field (docs/experiments.md, "Empty fields"). Such an
object is no brighter than the background next to it. `object_contrast` measures that: the
mean intensity inside each object minus the mean of a ring of background pixels around it,
divided by the field's noise (`noise_sigma`); `empty_field` takes a field none of whose
objects reaches ``postprocess.min_field_contrast`` for empty (`pipeline.segment.postprocess`
drops its objects, whichever the instance method). A field, not each object: under few photons
a real dim nucleus stands less than one deviation out of its noise, where the field's brightest
ones stand eight or more. Ratios of intensities, so the same on raw and normalised images.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from pipeline.segment.filters import EXACT_FLOAT32

log = logging.getLogger(__name__)
RING = 6  # px of background around an object that its surroundings are measured on
MARGIN = 8  # px kept between an object and the background pixels the noise is measured on
STEP = 2  # the ring and the noise are read on every STEP-th row and column: a quarter the time
MIN_PAIRS = 256  # fewer background pixel pairs than this: the noise is not measured there


def noise_sigma(image: np.ndarray, background: np.ndarray | None = None) -> float:
    """The standard deviation of the pixel noise of the (H, W) float `image`, from the
    differences of horizontal neighbours that are both in the (H, W) bool `background` (None:
    the whole image): for Gaussian noise of deviation s, the mean absolute difference is
    2 s / sqrt(pi). The mean, not the median, so an 8-bit image whose noise is about one grey
    level is not read as noiseless. 0.0 where the image is flat; NaN when fewer than MIN_PAIRS
    pairs are background (not measured)."""
    if image.ndim != 2 or (background is not None and background.shape != image.shape):
        shape = None if background is None else background.shape
        raise ValueError(f"noise_sigma needs an (H, W) image and mask; got {image.shape}, {shape}")
    diffs = np.abs(np.diff(image.astype(np.float32, copy=False), axis=1))
    if background is not None:
        diffs = diffs[background[:, 1:] & background[:, :-1]]
    if diffs.size < MIN_PAIRS:
        return float("nan")
    return float(np.sqrt(np.pi) / 2 * diffs.mean(dtype=np.float64))


def object_contrast(
    labels: np.ndarray, image: np.ndarray, means: np.ndarray | None = None
) -> np.ndarray:
    """(N + 1,) float64, for each label 0..N of the (H, W) int `labels` (0 = background, N
    under 2**24): the mean of the (H, W) float `image` inside the object (`means`, (N + 1,),
    when the caller has them) minus the mean over the background pixels within RING px of it,
    in units of `noise_sigma` (on the background at least MARGIN px from every object, or the
    whole image where that is too little); both read on every STEP-th row and column (the
    noise of a field too small for that on every pixel). NaN for entry 0, labels absent (or too
    small to be on that grid) and objects with no background around them (one that fills the
    field stands out of nothing); +inf for every object when the image has no noise to measure
    (a flat background: a drawn image; or a field of under MIN_PAIRS pixel pairs)."""
    if labels.shape != image.shape or labels.ndim != 2:
        raise ValueError(
            f"object_contrast needs (H, W) labels and image; got {labels.shape}, {image.shape}"
        )
    size = int(labels.max(initial=0)) + 1
    if size > EXACT_FLOAT32:  # the ring's dilation reads them as float32
        raise ValueError(
            f"object_contrast reads labels as float32, exact up to 2**24; got {size - 1}"
        )
    if means is not None and means.shape != (size,):
        raise ValueError(f"object_contrast: means of shape {means.shape} for {size} labels")
    contrast = np.full(size, np.nan)
    if size == 1:
        return contrast
    if means is None:
        objects = labels > 0
        flat = labels[objects].astype(np.intp)
        areas = np.bincount(flat, minlength=size)
        sums = np.bincount(flat, weights=image[objects], minlength=size)
        means = np.divide(sums, areas, out=np.zeros(size), where=areas > 0)
    grid, pixels = labels[::STEP, ::STEP], image[::STEP, ::STEP]
    objects = grid > 0
    near = cv2.dilate(objects.view(np.uint8), _square(MARGIN // STEP)) > 0
    sigma = noise_sigma(pixels, ~near)
    if np.isnan(sigma):  # too little background far from the objects
        sigma = noise_sigma(pixels)
    if np.isnan(sigma):  # a field under about 33 px a side: every pixel, not the grid's
        sigma = noise_sigma(image)
    if not sigma > 0:
        contrast[1:] = np.inf
        return contrast
    # each background pixel of the ring counts for the largest label within RING px
    grown = cv2.dilate(grid.astype(np.float32), _square(RING // STEP))
    ring = ~objects & (grown > 0)
    owner = grown[ring].astype(np.intp)
    counts = np.bincount(owner, minlength=size)
    around = np.bincount(owner, weights=pixels[ring], minlength=size)
    measured = counts > 0  # labels absent from `labels` have no ring either
    measured[0] = False
    contrast[measured] = (means[measured] - around[measured] / counts[measured]) / sigma
    return contrast


def empty_field(
    labels: np.ndarray,
    image: np.ndarray,
    min_contrast: float,
    means: np.ndarray | None = None,
    objects: np.ndarray | None = None,
) -> bool:
    """Whether the field of the (H, W) int `labels` (0 = background) is empty: `min_contrast` >
    0 and none of its objects (those of the (N + 1,) bool `objects`, default all) stands that
    many noise deviations out of the background around it in the (H, W) float `image`
    (`object_contrast`, given the objects' (N + 1,) `means` when the caller has them).
    A field without objects is not (nothing to drop)."""
    if not min_contrast or not labels.any():
        return False
    contrast = object_contrast(labels, image, means)
    best = np.nanmax(contrast[1:] if objects is None else contrast[objects], initial=-np.inf)
    if best >= min_contrast:
        return False
    log.debug(
        "no object stands %.1f noise deviations out of the background around it (the most: "
        "%.2f): the field is taken for empty",
        min_contrast,
        best,
    )
    return True


def _square(radius: int) -> np.ndarray:
    return np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
