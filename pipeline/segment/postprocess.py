"""From the network's foreground probability to instance labels, as the model card says.

``components``: connected components of the foreground (the model alone). ``watershed``: the
classical method's marker split (nuclei of the image for cells, distance-transform peaks for
nuclei; `pipeline.segment.watershed.split_foreground`) applied to the network's foreground, so
it is model + classical post-processing.
"""

from __future__ import annotations

import numpy as np

from pipeline.config import PostprocessConfig
from pipeline.config.sections import INSTANCE_METHODS
from pipeline.segment.card import ModelCard
from pipeline.segment.watershed import split_foreground


def foreground(prob: np.ndarray, post: PostprocessConfig) -> np.ndarray:
    """(H, W) float probability -> (H, W) bool foreground: above ``post.threshold``, specks
    smaller than ``post.watershed.min_object_size`` px removed."""
    from skimage.morphology import remove_small_objects

    fg = prob > post.threshold
    return remove_small_objects(fg, max_size=post.watershed.min_object_size - 1)


def to_instances(
    fg: np.ndarray, image: np.ndarray, card: ModelCard, method: str | None = None
) -> np.ndarray:
    """Split an (H, W) bool foreground of the (C, H, W) normalised `image` into (H, W) int32
    instance labels (0 = background) with `method` (default: the card's ``instances``)."""
    from skimage.measure import label as connected_components

    method = method or card.postprocess.instances
    if method not in INSTANCE_METHODS:
        raise ValueError(
            f"unknown instance method {method!r}; use one of {', '.join(INSTANCE_METHODS)}"
        )
    if method == "components":
        return connected_components(fg).astype(np.int32)
    post = card.postprocess.watershed
    return split_foreground(fg, image, card.channels, card.channel, card.target, post)
