"""Object size: what makes a network trained on one microscope work on another (Cellpose's
"diameter"). Training rescales every field so its objects have one diameter; inference measures
the objects in a first pass and, when they are of another size, runs the network again on the
image rescaled to that diameter (`pipeline.segment.inference.predict_maps`). The objects of a
new image are measured without the network (`image_diameter`: a network shown objects of
another size breaks them into pieces of the size it knows, so its own output cannot say how
large they are); the network's first pass is the fallback when that finds nothing.

A diameter here is an object's inscribed diameter: twice the largest distance from a pixel of
the object to its edge (for a disk, its diameter). Touching objects merged in a foreground mask
keep the larger one's, so it can be measured on a foreground alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi

from pipeline.segment.filters import Parts, background, edt, fill_holes, gaussian, parts
from pipeline.segment.stats import robust_deviation, weighted_median

if TYPE_CHECKING:
    import torch

TOLERANCE = 1.3  # rescale only when the objects differ in size by more than this factor
LIMITS = (0.25, 4.0)  # never shrink or enlarge an image by more than this
HALF_RES_FROM = 512  # image_diameter measures fields this large a side at half resolution
# image_diameter thresholds the image less its background under this scale (px): larger than
# the objects the network is meant for (nuclei of 10-80 px; for a model trained on larger ones,
# such as BBBC020's cells of about 150 px, FLAT_WINDOW_DIAMETERS times its training diameter),
# smaller than a field's haze
FLAT_WINDOW = 256
FLAT_WINDOW_DIAMETERS = 6
# A haze that varies faster than FLAT_WINDOW (small nuclei, a strong haze) still inflates the
# measure. When it measures more than TOLERANCE x a coarse measure under FINE_WINDOW px, the
# objects are measured again under FLAT_WINDOW_DIAMETERS x that coarse diameter, and that is
# taken if the brightest of them stands FINE_CONTRAST deviations out of the background on the
# image it was measured on (`peak_contrast`; real fields 23-465 on the CTC frames under haze,
# 20 photons and both together; empty crops 5-12, blurred and resampled too: a small window
# measures their noise small, and the network, shown them enlarged, fills them with specks)
FINE_WINDOW = 48
FINE_CONTRAST = 20.0
# A few objects far brighter than the rest (debris, a dead cell, a bead) take Otsu's threshold
# alone: where it finds FEW parts or fewer, the objects are measured again under Otsu's
# threshold of the rest of the image, and those taken when they are MANY times as many and the
# brightest of them stands FINE_CONTRAST deviations out (`beneath_brightest`)
FEW = 3
MANY = 4


def object_distances(
    labels: np.ndarray,
) -> Iterator[tuple[tuple[slice, slice], np.ndarray, np.ndarray]]:
    """For each object of (H, W) integer labels (0 = background): its bounding box, its mask
    there, and each of its pixels' distance to the object's own edge (neighbours and the image
    edge count as edge), float64 in the box."""
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {labels.shape}")
    for i, box in enumerate(ndi.find_objects(labels.astype(np.int64)), 1):
        if box is not None:
            inside = labels[box] == i
            yield box, inside, ndi.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]


def diameters(labels: np.ndarray) -> np.ndarray:
    """(H, W) integer labels (0 = background) -> (n,) float64 inscribed diameter per object."""
    return np.array([2 * dist.max() for _, _, dist in object_distances(labels)])


def median_diameter(labels: np.ndarray) -> float:
    """Median inscribed diameter (px) of the objects of (H, W) labels; 0.0 when there are none."""
    d = diameters(labels)
    return float(np.median(d)) if len(d) else 0.0


def foreground_diameter(
    fg: np.ndarray,
    inside: np.ndarray | None = None,
    fg_parts: Parts | None = None,
) -> float:
    """Inscribed diameter (px) of the connected parts of an (H, W) bool foreground, their
    median weighted by area (specks barely count); 0.0 when it is empty. `inside`: `edt(fg)`,
    (H, W) float32, when the caller has it (the image's edge, background here, is applied);
    `fg_parts`: `filters.parts(fg)` likewise."""
    found = parts(fg) if fg_parts is None else fg_parts
    n = found.n
    if not n:
        return 0.0
    on = np.flatnonzero(fg)  # most of a sparse field is background: only its parts' pixels count
    dist, ids = edge_bounded(fg, inside, at=on, fg_parts=found), found.labels.ravel()[on]
    radius = np.zeros(n + 1, dist.dtype)  # of edt's dtype: ufunc.at's fast path, no casts
    np.maximum.at(radius, ids, dist)  # per part; 30x faster than ndi.maximum
    area = np.bincount(ids, minlength=n + 1)[1:]
    return 2 * weighted_median(radius[1:], area)


def edge_bounded(
    fg: np.ndarray,
    inside: np.ndarray | None = None,
    at: np.ndarray | None = None,
    fg_parts: Parts | None = None,
) -> np.ndarray:
    """(H, W) float32: each pixel of the (H, W) bool `fg`'s distance to the nearest background
    pixel or to the image's edge, as if the image were framed by background; with `at` (N,)
    flat indices (into ``fg.ravel()``), (N,) at those pixels alone; `fg_parts`:
    `filters.parts(fg)` when the caller has them. From `edt(fg)` (`inside`, computed when
    None) capped by the distance to the frame: the same numbers, as the square root is
    monotone (one distance transform where the tuning and the shape term would run two)."""
    if fg.all():  # no background pixel: edt has no answer of its own
        framed = edt(np.pad(fg, 1))[1:-1, 1:-1]
        return framed if at is None else framed.ravel()[at]
    h, w = fg.shape
    rows, cols = (np.arange(h)[:, None], np.arange(w)) if at is None else np.divmod(at, w)
    frame = np.minimum(np.minimum(rows + 1, h - rows), np.minimum(cols + 1, w - cols))
    dist = edt(fg, fg_parts) if inside is None else inside
    return np.minimum(dist if at is None else dist.ravel()[at], frame.astype(np.float32))


def image_diameter(channel: np.ndarray, trained: float = 0.0) -> float:
    """Object diameter (px) in an (H, W) fluorescence image, measured classically: Gaussian
    blur (2 px), its background subtracted (`filters.background`, under a window of FLAT_WINDOW
    px or FLAT_WINDOW_DIAMETERS x `trained`, the diameter the network was trained at, whichever
    is larger), Otsu threshold, holes filled, `foreground_diameter` (`flattened`); measured
    again under a finer window where a haze may have inflated it (FINE_WINDOW), and that taken
    when its objects stand out (`peak_contrast`). Fields of at
    least HALF_RES_FROM px a side are measured at half resolution (within 5% of the
    full-resolution figure on the CTC frames, in a fifth of the time). 0.0 when nothing stands
    out (a flat image).

    Without the background subtracted, out-of-focus light (haze half as bright as the nuclei,
    in silico) joined the nuclei above Otsu's threshold: GOWT1's nuclei measured 316-474 px
    instead of 51-66, the image was shrunk x4 and the network found little (HeLa F1 0.34).
    With it, the same diameters on the clean CTC frames (within 2%; most identical)."""
    view = resolution(channel)  # halved once for the three measures
    size, _ = flattened(
        channel, max(FLAT_WINDOW, round(FLAT_WINDOW_DIAMETERS * trained)), view=view
    )
    first, _ = flattened(channel, FINE_WINDOW, view=resolution(channel, True, finer=view))
    if not first or size <= TOLERANCE * first:
        return size
    window = max(FINE_WINDOW, round(FLAT_WINDOW_DIAMETERS * first))
    fine, (fg, smooth) = flattened(channel, window, view=view)
    return fine if peak_contrast(fg, smooth) >= FINE_CONTRAST else size


def peak_contrast(fg: np.ndarray, smooth: np.ndarray) -> float:
    """How far the brightest pixel of the (h, w) bool foreground `fg` stands above the rest
    of the (h, w) float `smooth` image (`flattened`'s: blurred, its background subtracted), in
    robust deviations of that rest (`robust_deviation`; both read on every other row and
    column). The deviation is the background's own at the scale the objects were found at, so
    blurred or resampled noise, whose pixels vary together, is not taken for objects (a
    deviation from neighbouring pixels' differences would be too small there).
    -inf without foreground or background; +inf when the background is flat."""
    rest = smooth[::2, ::2][~fg[::2, ::2]]
    if not fg.any() or not rest.size:
        return -np.inf
    level = np.median(rest)
    deviation = robust_deviation(rest, level)
    peak = float(smooth[fg].max()) - level
    return peak / deviation if deviation > 0 else np.inf


def resolution(
    channel: np.ndarray, coarse: bool = False, finer: tuple[np.ndarray, int] | None = None
) -> tuple[np.ndarray, int]:
    """The (h, w) float32 image `image_diameter` measures the (H, W) `channel` on, and its
    shrink (H / h): half the resolution from HALF_RES_FROM px a side, else the channel itself;
    `coarse`: halved once more (fields of 256 px or more). `finer`: this call's result without
    `coarse` when the caller has it (not halved again)."""
    h, w = channel.shape
    if finer is None:
        finer = (
            (halved(channel), 2) if min(h, w) >= HALF_RES_FROM else (channel.astype(np.float32), 1)
        )
    small, shrink = finer
    if coarse and min(h, w) >= HALF_RES_FROM // 2:
        small, shrink = halved(small), 2 * shrink
    return small, shrink


def flattened(
    channel: np.ndarray,
    window: int,
    coarse: bool = False,
    view: tuple[np.ndarray, int] | None = None,
) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """`image_diameter`'s measure of the (H, W) `channel` with its background under `window`
    px subtracted, at `resolution(channel, coarse)` (`view`: that, when the caller has it).
    Returns the diameter (px of `channel`) and the (h, w) bool foreground it was measured on
    with the (h, w) float32 image it was thresholded on (blurred, its background subtracted;
    0.0, no foreground and the image at that resolution for a flat one)."""
    from skimage.filters import threshold_otsu

    small, shrink = resolution(channel, coarse) if view is None else view
    smooth = gaussian(small, 2.0 / shrink)
    step = max(1, min(8, window // 16) // shrink)  # the background's blocks: 1-8 px
    smooth -= background(smooth, max(3, window // shrink), step)
    if smooth.max() - smooth.min() < 1e-6:
        return 0.0, (np.zeros(small.shape, bool), small)
    fg = fill_holes(smooth > threshold_otsu(smooth))
    fg, fg_parts = beneath_brightest(fg, smooth)
    return shrink * foreground_diameter(fg, fg_parts=fg_parts), (fg, smooth)


def beneath_brightest(fg: np.ndarray, smooth: np.ndarray) -> tuple[np.ndarray, Parts]:
    """The (h, w) bool foreground `flattened` measures on, with its `parts`, given Otsu's `fg`
    of the (h, w) float `smooth` image: `fg` itself, unless it has FEW parts or fewer and
    Otsu's threshold of the rest of the image finds MANY times as many apart from them (parts
    touching them are their rims), the brightest standing FINE_CONTRAST deviations out
    (`peak_contrast`): then those. One bright blob 4 nuclear diameters across at 10x the
    nuclei's brightness (debris, in silico) measured 79-87 px on HeLa frames whose nuclei are
    21 px across, and the network, shown them at a fifth of its training size, reached F1
    0.07-0.24 on them; a crop of one or two nuclei has nothing but noise beside them, which
    does not stand out so far."""
    from skimage.filters import threshold_otsu

    bright = parts(fg)
    if not 0 < bright.n <= FEW or fg.all():
        return fg, bright
    above = parts(fill_holes(smooth > threshold_otsu(smooth[~fg])))
    rims = np.unique(above.labels[fg])
    keep = np.ones(above.n + 1, bool)
    keep[rims] = False
    keep[0] = False
    dim = keep[above.labels]
    if np.count_nonzero(keep) < MANY * bright.n or peak_contrast(dim, smooth) < FINE_CONTRAST:
        return fg, bright
    return dim, parts(dim)


def halved(channel: np.ndarray) -> np.ndarray:
    """(H, W) float -> (H // 2, W // 2) float32: `resize`'s area average. With even sides each
    2x2 block's mean, summed in the order torch sums it (the same bits; a fifth of the time of
    torch's one-thread pooling), otherwise `resize` itself."""
    h, w = channel.shape
    if h % 2 or w % 2:
        return resize(channel[None], (h // 2, w // 2))[0]
    c = channel.astype(np.float32, copy=False)
    return (c[0::2, 0::2] + c[0::2, 1::2] + c[1::2, 0::2] + c[1::2, 1::2]) / np.float32(4)


def rescale_factor(measured: float, trained: float) -> float:
    """The zoom that brings objects of `measured` px to the `trained` diameter: 1.0 when either
    is unknown (0) or they differ by less than TOLERANCE; otherwise clipped to LIMITS."""
    if measured <= 0 or trained <= 0:
        return 1.0
    factor = trained / measured
    if 1 / TOLERANCE <= factor <= TOLERANCE:
        return 1.0
    return float(np.clip(factor, *LIMITS))


def resize(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(C, H, W) float32 -> (C, *shape) float32, bilinear (area-averaged when shrinking)."""
    import torch  # here: measuring sizes does not need it (`pipeline.segment.fields`)

    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    return resize_tensor(x, shape)[0].numpy()


def resize_tensor(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """`resize` of an (N, C, H, W) float32 tensor on its device: (N, C, *shape), contiguous."""
    import torch

    smaller = shape[0] * shape[1] < x.shape[-2] * x.shape[-1]
    mode = "area" if smaller else "bilinear"
    kwargs = {} if smaller else {"align_corners": False}
    return torch.nn.functional.interpolate(x.contiguous(), size=shape, mode=mode, **kwargs)
