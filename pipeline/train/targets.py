"""What the network learns, made from an instance label image (0 = background).

Two maps per image: the foreground (label > 0) and the normalised distance: inside each object
its Euclidean distance to the object's own edge divided by the object's largest distance, so
every object, small or large, has a core of value 1 fading to 0 at its border and touching
objects are separated by a valley. Seeds cut from this map split touching objects
(`pipeline.segment.postprocess`). Outside the image counts as background.
"""

from __future__ import annotations

import numpy as np

from pipeline.segment.scale import object_distances


def normalised_distance(labels: np.ndarray) -> np.ndarray:
    """(H, W) integer labels -> (H, W) float32 in [0, 1] (see the module docstring)."""
    out = np.zeros(labels.shape, np.float32)
    for box, inside, dist in object_distances(labels):
        out[box][inside] = dist[inside] / dist.max()
    return out


def target_maps(labels: np.ndarray) -> np.ndarray:
    """(H, W) labels -> (2, H, W) float32 targets: foreground {0, 1}, normalised distance."""
    return np.stack([(labels > 0).astype(np.float32), normalised_distance(labels)])
