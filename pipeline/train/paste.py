"""Touching nuclei made from the crop's own nuclei (copy-paste augmentation, Ghiasi et al. 2021).

A dense field holds many pairs of nuclei pressed together, a sparse one few: HeLa's training
frames hold 2.7 touching pairs per frame, its last frames 17.4, and a network that met few
pairs merges them. `paste_touching` copies whole objects of a crop, with their own pixels and
the few pixels around them, next to other objects of the same crop so that the two touch,
the way they do in a dense field. Pixels and labels move together: the copy's outline is its
label's and its texture and edge are real; where it meets its neighbour both edges fade, but
the two may differ in brightness more than real neighbours do (measured on the CTC sets in
docs/experiments.md: off there).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from pipeline.train.targets import CONTACT_WINDOW

MARGIN = 2  # px of the source's surroundings carried with it (its edge fading out)
TRIES = 6  # directions tried per pair before giving up on it


def paste_touching(
    image: np.ndarray, labels: np.ndarray, p: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(C, H, W) float32 `image` and (H, W) int `labels` (0 = background, negative = unknown)
    -> new arrays where, for each object with probability `p`, a copy of an object of the crop
    (one that does not touch the crop's edge) is pasted beside it, touching it and covering
    only background. The copy gets a new id; its pixels are blended in over a 1 px soft edge
    that leaves other objects' pixels alone. Pairs with no free room are skipped. The inputs
    are not modified."""
    if image.ndim != 3 or image.shape[1:] != labels.shape:
        raise ValueError(
            f"need (C, H, W) image and (H, W) labels, got {image.shape} and {labels.shape}"
        )
    if not 0 <= p <= 1:
        raise ValueError(f"paste probability must be in [0, 1] (train.augment.paste), got {p}")
    ids = np.unique(labels[labels > 0])
    targets = ids[rng.random(ids.size) < p]
    if not targets.size:
        return image, labels
    boxes = ndi.find_objects(np.maximum(labels, 0))
    h, w = labels.shape
    whole = [
        i
        for i in ids
        if boxes[i - 1] is not None
        and all(s.start > 0 and s.stop < n for s, n in zip(boxes[i - 1], (h, w), strict=True))
    ]
    if not whole:
        return image, labels
    image, labels = image.copy(), labels.copy()
    for target in targets:
        source = whole[rng.integers(len(whole))]
        _paste_beside(image, labels, source, int(target), boxes[source - 1], rng)
    return image, labels


def _paste_beside(
    image: np.ndarray,
    labels: np.ndarray,
    source: int,
    target: int,
    box: tuple[slice, slice],
    rng: np.random.Generator,
) -> None:
    """Paste object `source` (its bounding `box`) beside `target`, in place, if room allows."""
    h, w = labels.shape
    y0, y1 = max(box[0].start - MARGIN, 0), min(box[0].stop + MARGIN, h)
    x0, x1 = max(box[1].start - MARGIN, 0), min(box[1].stop + MARGIN, w)
    mask = labels[y0:y1, x0:x1] == source
    patch = image[:, y0:y1, x0:x1].copy()
    alpha = ndi.gaussian_filter(mask.astype(np.float32), 1.0)
    alpha[mask] = 1.0
    ys, xs = np.nonzero(mask)
    source_centre = np.array([ys.mean() + y0, xs.mean() + x0])
    ty, tx = np.nonzero(labels == target)
    if not ty.size:
        return
    target_centre = np.array([ty.mean(), tx.mean()])
    reach = np.sqrt(ys.size / np.pi) + np.sqrt(ty.size / np.pi)  # sum of the two radii
    window = np.ones((CONTACT_WINDOW, CONTACT_WINDOW), bool)  # "touching" as contact_band counts
    touching = ndi.binary_dilation(labels == target, window)
    new_id = int(labels.max()) + 1
    for _ in range(TRIES):
        angle = rng.uniform(0, 2 * np.pi)
        step = np.array([np.sin(angle), np.cos(angle)])
        for d in np.arange(0.5 * reach, 1.5 * reach, 1.0):  # the nearest free spot first
            dy, dx = np.rint(target_centre + d * step - source_centre).astype(int)
            py, px = ys + y0 + dy, xs + x0 + dx
            if py.min() < 0 or px.min() < 0 or py.max() >= h or px.max() >= w:
                break
            if (labels[py, px] != 0).any():
                continue
            if not touching[py, px].any():
                break  # the nearest free spot in this direction leaves a gap
            _blend(image, labels, patch, alpha, y0 + dy, x0 + dx)
            labels[py, px] = new_id
            return


def _blend(
    image: np.ndarray, labels: np.ndarray, patch: np.ndarray, alpha: np.ndarray, y: int, x: int
) -> None:
    """Blend (C, h, w) `patch` into `image` at corner (y, x) with (h, w) weights `alpha`,
    clipped to the image, in place; pixels of labelled objects keep their own values."""
    _, h, w = image.shape
    ph, pw = alpha.shape
    sy, sx = max(0, -y), max(0, -x)
    ey, ex = min(ph, h - y), min(pw, w - x)
    a = np.where(labels[y + sy : y + ey, x + sx : x + ex] != 0, 0.0, alpha[sy:ey, sx:ex])
    region = image[:, y + sy : y + ey, x + sx : x + ex]
    region[:] = a * patch[:, sy:ey, sx:ex] + (1 - a) * region
