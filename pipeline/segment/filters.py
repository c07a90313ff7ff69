"""Image filters of the post-processing, computed by OpenCV with SciPy's and scikit-image's
results: the same numbers (to float32 rounding) in a fraction of the time (each against its
original on a real 1024x1024 field: benchmarks/postprocess_speed.py). Post-processing runs on
the CPU once per image beside a network that takes milliseconds on a GPU, so its cost sets how
many images a second a GPU machine segments.

Masks are (H, W) bool, images (H, W) float, labels (H, W) integers (0 = background).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np
from scipy import ndimage as ndi

CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))  # 4-connectivity, as SciPy's default
SQUARE = np.ones((3, 3), np.uint8)  # 8-connectivity, as scikit-image's reconstruction
EXACT_FLOAT32 = 2**24  # integers up to this are exact in float32
POOR_STRIDE = 512  # OpenCV's exact distance transform is 2-3x slower on rows a multiple of this
PART_COST_PX = 1000  # edt: one part's call costs about as much as this many pixels of the field


@dataclass(frozen=True, eq=False)
class Parts:
    """The 4-connected parts of an (H, W) bool mask (`parts`): `labels`, (H, W) int32, 1..n in
    OpenCV's numbering (0: outside the mask), and `n`. Their boxes are found once, when first
    asked: the distance transform, the h-maxima and the flood walk the same parts of a field
    (and the tuning, hundreds of times)."""

    labels: np.ndarray
    n: int

    @cached_property
    def boxes(self) -> list[tuple[slice, slice]]:
        """Each part's bounding box (`scipy.ndimage.find_objects`), part i at i - 1."""
        return ndi.find_objects(self.labels, self.n)

    @cached_property
    def grown_boxes(self) -> list[tuple[slice, ...]]:
        """`boxes` grown by 1 px on every side (clipped at 0; slicing clips the far end)."""
        return [tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box) for box in self.boxes]


def edt(
    mask: np.ndarray,
    mask_parts: Parts | None = None,
    dtype: type[np.floating] = np.float32,
) -> np.ndarray:
    """(H, W) bool -> (H, W) `dtype` (float32 or float64): each True pixel's Euclidean distance
    to the nearest False one, 0 on False pixels (`scipy.ndimage.distance_transform_edt`, whose
    float64 numbers these are; the image edge is not a False pixel), as the square root of the
    integer squared distance, correctly rounded. `mask_parts`: `parts(mask)` when the caller
    has them.

    OpenCV's exact transform (``DIST_MASK_PRECISE``), whose float arithmetic leaves some
    pixels 1 ulp off (which ones depends on where they lie in the array), rounded back
    (`exact`). Part by part when the 4-connected parts' boxes, grown by 1 px, cover less than
    half the field: a part's pixel has its nearest False pixel in that box (every pixel nearer
    is True and joined to it, so in the part; the nearest False one has a part's pixel beside
    it along each axis it lies off), so the background between nuclei costs nothing. The whole
    field otherwise, rows a multiple of POOR_STRIDE px wide widened with True pixels, which
    change no distance (OpenCV takes 2-3x longer on such rows). SciPy's when the mask has no
    False pixel, where OpenCV has no answer."""
    if mask.ndim != 2 or dtype not in (np.float32, np.float64):
        raise ValueError(f"edt expects an (H, W) mask and float32 or 64: {mask.shape} {dtype}")
    if mask.all():
        return ndi.distance_transform_edt(mask).astype(dtype)
    mask = mask.astype(bool, copy=False)
    found = parts(mask) if mask_parts is None else mask_parts
    ids, boxes = found.labels, found.grown_boxes
    h, w = mask.shape
    covered = sum((r.stop - r.start) * (c.stop - c.start) + PART_COST_PX for r, c in boxes)
    if covered >= mask.size // 2:
        flags = np.ones((h, w + (16 if w % POOR_STRIDE == 0 else 0)), np.uint8)
        flags[:, :w] = mask
        precise = cv2.distanceTransform(flags, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        return exact(precise[:, :w], dtype)
    out = np.zeros(mask.shape, dtype)
    for i, box in enumerate(boxes, 1):
        own = ids[box] == i
        precise = cv2.distanceTransform(own.view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        np.copyto(out[box], exact(precise, dtype), where=own)
    return out


def exact(dist: np.ndarray, dtype: type[np.floating] = np.float32) -> np.ndarray:
    """(H, W) float32 distances at most a few ulp off the square root of an integer -> (H, W)
    `dtype` that square root, correctly rounded: the squares rounded to integers first (in
    float32 up to 512 px, where its squares are well within 0.5 of the integer; in float64
    beyond, exact up to about 2000 px and within 1 float32 ulp further, where float32 cannot
    tell neighbouring integers' roots apart)."""
    far = dtype == np.float64 or (dist.size > 0 and float(dist.max()) > 512)
    squares = np.square(dist, dtype=np.float64 if far else np.float32)
    return np.sqrt(np.rint(squares, out=squares), dtype=dtype)


def gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    """(H, W) float -> (H, W) float32 blurred with a Gaussian of `sigma` px
    (`scipy.ndimage.gaussian_filter`: mirrored edges, the kernel cut at 4 sigma)."""
    if image.ndim != 2 or not sigma >= 0:
        raise ValueError(f"gaussian needs an (H, W) image, sigma >= 0; got {image.shape}, {sigma}")
    image = np.ascontiguousarray(image, dtype=np.float32)
    radius = int(4.0 * sigma + 0.5)
    if radius == 0:
        return image.copy()
    size = (2 * radius + 1, 2 * radius + 1)
    return cv2.GaussianBlur(image, size, sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def background(image: np.ndarray, window: int, step: int = 8) -> np.ndarray:
    """(H, W) float -> (H, W) float32: the smooth background the bright objects of `image`
    stand on (haze, out-of-focus light, an uneven offset), objects up to about `window` px
    across taken out: a grey opening (a minimum, then a maximum filter) by a square of
    `window` px on the image's `step` x `step` block minima, blurred by a quarter of the window
    and resized back. An image smaller than the window gets a nearly flat one."""
    if image.ndim != 2 or window < 1 or step < 1:
        raise ValueError(
            f"background needs an (H, W) image, window and step >= 1; got {image.shape}, "
            f"{window}, {step}"
        )
    h, w = image.shape
    hh, ww = -(-h // step), -(-w // step)
    padded = np.pad(image.astype(np.float32), ((0, hh * step - h), (0, ww * step - w)), "edge")
    small = padded[::step, ::step].copy()  # the blocks' minima, a slice at a time (fast)
    for i in range(step):
        for j in range(step):
            np.minimum(small, padded[i::step, j::step], out=small)
    k = max(3, window // step) | 1  # odd
    square = np.ones((k, k), np.uint8)
    opened = cv2.dilate(
        cv2.erode(small, square, borderType=cv2.BORDER_REFLECT),
        square,
        borderType=cv2.BORDER_REFLECT,
    )
    smooth = cv2.GaussianBlur(opened, (0, 0), k / 4, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(smooth, (ww * step, hh * step), interpolation=cv2.INTER_LINEAR)[:h, :w]


def inner_boundaries(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """(H, W) integer labels -> (H, W) bool: the object pixels that touch another label or the
    background (`skimage.segmentation.find_boundaries` mode ``inner``), thickened to `width`
    px inwards and outwards (`scipy.ndimage.binary_dilation`, 4-connected, ``width - 1``
    times)."""
    if labels.ndim != 2 or width < 1:
        raise ValueError(f"boundaries need (H, W) labels, width >= 1: {labels.shape} {width}")
    if labels.size and labels.max() >= EXACT_FLOAT32:
        from skimage.segmentation import find_boundaries

        edge = find_boundaries(labels, mode="inner")
    else:
        values = labels.astype(np.float32)
        edge = (cv2.dilate(values, CROSS) != cv2.erode(values, CROSS)) & (labels != 0)
    if width > 1:
        edge = cv2.dilate(edge.view(np.uint8), CROSS, iterations=width - 1).view(bool)
    return edge


def parts(mask: np.ndarray) -> Parts:
    """(H, W) bool -> its 4-connected parts (`Parts`: (H, W) int32 labels 1..n, and n): the
    parts `scipy.ndimage.label` finds, in about half the time, but numbered in OpenCV's order,
    which is not always SciPy's: for uses whose result does not depend on the numbering."""
    if mask.ndim != 2 or mask.dtype != bool:
        raise ValueError(f"parts needs an (H, W) bool mask, got {mask.dtype} {mask.shape}")
    flags = np.ascontiguousarray(mask).view(np.uint8)
    n, labels = cv2.connectedComponents(flags, connectivity=4, ltype=cv2.CV_32S)
    return Parts(labels, n - 1)


def label_sparse(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """(H, W) bool -> ((H, W) int32 labels, n): `scipy.ndimage.label` (4-connected parts
    numbered in raster order, which the watershed's seeds need), answered directly for a mask
    whose pixels are all isolated (h-maxima seeds, nearly always single pixels) or that is
    empty (no orphans left by the watershed, the usual case): SciPy scans the whole field,
    3 ms for a 1024x1024 one, to find a few dozen pixels or none."""
    if mask.ndim != 2 or mask.dtype != bool:
        raise ValueError(f"label_sparse needs an (H, W) bool mask, got {mask.dtype} {mask.shape}")
    at = np.flatnonzero(mask)  # raster order: SciPy's numbering of isolated pixels
    h, w = mask.shape
    flat = mask.ravel()
    right = at[(at % w) < w - 1] + 1
    below = at[at < (h - 1) * w] + w
    if flat[right].any() or flat[below].any():  # touching pixels: SciPy's own labelling
        labels, n = ndi.label(mask)
        return labels.astype(np.int32, copy=False), n
    labels = np.zeros(mask.shape, np.int32)
    labels.ravel()[at] = np.arange(1, at.size + 1, dtype=np.int32)
    return labels, int(at.size)


def flood(
    surface: np.ndarray,
    markers: np.ndarray,
    mask: np.ndarray,
    mask_parts: Parts | None = None,
) -> np.ndarray:
    """(H, W) float `surface`, (H, W) integer `markers` (0: none), (H, W) bool `mask` -> (H, W)
    int32 labels: scikit-image's watershed (``watershed(surface, markers, mask=mask)``,
    4-connected), flooded only where it has a choice. A 4-connected part of the mask whose
    markers all carry one label is that label whole (where the flood would spread it), one
    without markers stays 0, and only the parts holding several labels (in a field of nuclei,
    the touching ones) are flooded, each in its bounding box: the cost of the whole field's
    heap and padding is paid by a few boxes. `mask_parts`: `parts(mask)` when the caller has
    them.

    The same labels as the whole-field call, but for one case: scikit-image pops markers of
    equal height in an order set by everything in its heap, so where markers of different
    labels in one part lie at exactly the same height a tied pixel may go the other way
    (random integer surfaces: 309 of 3000 fields differ; random continuous ones and the real
    maps checked: none)."""
    from skimage.segmentation import watershed

    if not surface.shape == markers.shape == mask.shape or mask.ndim != 2:
        raise ValueError(
            f"flood needs (H, W) surface, markers and mask of one shape: "
            f"{surface.shape} {markers.shape} {mask.shape}"
        )
    found = parts(mask) if mask_parts is None else mask_parts
    ids, n = found.labels, found.n
    at = np.flatnonzero(markers)
    part, label = ids.ravel()[at], markers.ravel()[at].astype(np.int64)
    part, label = part[part > 0], label[part > 0]  # markers outside the mask count for nothing
    span = int(label.max()) + 1 if label.size else 1
    pairs = np.unique(part * span + label)  # one per (part, label)
    part, label = pairs // span, pairs % span
    count = np.bincount(part, minlength=n + 1)
    whole = np.zeros(n + 1, np.int32)
    one = count[part] == 1
    whole[part[one]] = label[one]
    labels = np.take(whole, ids)  # twice as fast as whole[ids]
    several = np.flatnonzero(count > 1)
    if several.size:
        for i in several:
            box = found.boxes[i - 1]
            inside = ids[box] == i
            grown = watershed(surface[box], np.where(inside, markers[box], 0), mask=inside)
            labels[box][inside] = grown[inside]
    return labels


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool with its holes filled: background parts (4-connected) that do not touch the
    image edge become foreground (`scipy.ndimage.binary_fill_holes`, in a third of the time)."""
    if mask.ndim != 2:
        raise ValueError(f"fill_holes expects an (H, W) mask, got shape {mask.shape}")
    outer = parts(~mask)
    background, n = outer.labels, outer.n
    outside = np.zeros(n + 1, bool)
    outside[0] = True  # the mask itself
    for edge in (background[0], background[-1], background[:, 0], background[:, -1]):
        outside[edge] = True
    return mask | ~outside[background]


def h_maxima(image: np.ndarray, h: float) -> np.ndarray:
    """(H, W) float32 -> (H, W) bool: the maxima at least `h` > 0 deep
    (`skimage.morphology.h_maxima`, 8-connected). An image with one regional maximum above its
    minimum (a foreground part's blurred distance around one nucleus, most of the parts the
    post-processing hands it) is answered directly, 5-10x faster: there the reconstruction
    scikit-image computes is min(image, the highest shifted value) exactly, since every pixel
    climbs to that maximum; the shift and the comparison are scikit-image's own arithmetic.
    Other images go to scikit-image."""
    from skimage.morphology import h_maxima as reconstructed

    if image.ndim != 2 or image.dtype != np.float32 or not h > 0:
        raise ValueError(f"h_maxima needs an (H, W) float32 image and h > 0: {image.shape} {h}")
    if h > np.ptp(image):
        return np.zeros(image.shape, bool)
    low = image.min()
    tops = (image == cv2.dilate(image, SQUARE)) & (image > low)  # no higher neighbour
    shifted = image - h - 2 * np.finfo(image.dtype).resolution * np.abs(image)  # skimage's
    ceiling = shifted.max()
    if cv2.connectedComponents(tops.view(np.uint8), connectivity=8)[0] != 2 or ceiling < low:
        return reconstructed(image, h).astype(bool)
    return (image - np.minimum(image, ceiling)) >= h
