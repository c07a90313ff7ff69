"""What the network learns, made from an instance label image (0 = background).

Two maps per image: the foreground (label > 0) and the normalised distance: inside each object
its Euclidean distance to the object's own edge divided by the object's largest distance, so
every object, small or large, has a core of value 1 fading to 0 at its border and touching
objects are separated by a valley. Seeds cut from this map split touching objects
(`pipeline.segment.postprocess`). Outside the image counts as background.

A third map weighs each pixel in the loss. Where two objects touch or nearly touch, a merge
costs two objects, yet the pixels between them are few: `contact_band` pixels (of any object,
or of the background between them) within CONTACT_REACH px of two different objects weigh
``1 + contact_weight`` (U-Net's separation weight, Ronneberger et al. 2015). Where the labels
are not known the weight is 0. Ground truth that skips objects touching the image
edge (BBBC020, the CTC silver truth: `data.edge_objects_labelled` false) leaves those nuclei
looking like background; `mark_unlabelled_edge` marks the unlabelled pixels near the edge
UNKNOWN (-1), and the loss ignores them instead of teaching the network to miss such nuclei.

A fourth map is that contact band as a target of its own (``train.contact_map``): the pixels
between touching objects, as DCAN and nnU-Net-style boundary targets draw them, which the
post-processing cuts out of the distance map so that touching objects part even where the
predicted distance leaves only a shallow valley between them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from pipeline.segment.scale import object_distances

UNKNOWN = -1  # label value: not annotated, neither object nor background
CONTACT_REACH = 2  # px (at the training scale): a contact band is this wide on either side
CONTACT_WINDOW = 2 * CONTACT_REACH + 1  # the square neighbourhood `contact_band` looks in


def normalised_distance(labels: np.ndarray) -> np.ndarray:
    """(H, W) integer labels -> (H, W) float32 in [0, 1] (see the module docstring)."""
    out = np.zeros(labels.shape, np.float32)
    for box, inside, dist in object_distances(np.maximum(labels, 0)):
        out[box][inside] = dist[inside] / dist.max()
    return out


def mark_unlabelled_edge(labels: np.ndarray, band: float) -> np.ndarray:
    """(H, W) integer labels -> int32 copy whose background pixels closer than `band` px to the
    image edge are UNKNOWN (an unannotated object touching the edge reaches about one object
    diameter in). Labelled objects stay as they are."""
    if labels.ndim != 2 or band < 0:
        raise ValueError(f"need (H, W) labels and band >= 0, got {labels.shape} and {band}")
    inner = np.zeros(labels.shape, bool)
    inner[1:-1, 1:-1] = True
    near_edge = ndi.distance_transform_edt(inner) < band
    out = labels.astype(np.int32)
    out[near_edge & (out == 0)] = UNKNOWN
    return out


def contact_band(labels: np.ndarray) -> np.ndarray:
    """(H, W) integer labels (0 = background, negative ignored) -> (H, W) bool: the pixels
    whose CONTACT_WINDOW-square neighbourhood holds two different objects."""
    objects = np.maximum(labels, 0)
    highest = ndi.maximum_filter(objects, CONTACT_WINDOW)
    none = np.iinfo(objects.dtype).max
    lowest = ndi.minimum_filter(np.where(objects > 0, objects, none), CONTACT_WINDOW)
    return (lowest != none) & (highest != lowest)


def target_maps(labels: np.ndarray, contact_weight: float = 0.0) -> np.ndarray:
    """(H, W) labels (UNKNOWN allowed) -> (4, H, W) float32 targets: foreground {0, 1},
    normalised distance, the loss weight (0 where the label is UNKNOWN, 1 +
    `contact_weight` in the `contact_band`, else 1) and the contact band {0, 1} itself (what a
    network with a contact output learns to draw between touching objects)."""
    weight = (labels != UNKNOWN).astype(np.float32)
    contact = contact_band(labels) & (weight > 0)
    if contact_weight:
        weight[contact] += contact_weight
    return np.stack(
        [
            (labels > 0).astype(np.float32),
            normalised_distance(labels),
            weight,
            contact.astype(np.float32),
        ]
    )
