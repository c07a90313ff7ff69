"""Classical segmentation methods: a registry of name -> function, each on one raw image.

Every method maps a `MethodInput` (a raw (C, H, W) image) to an (H, W) array: a binary mask
(uint8 0/255 or bool), whose connected components become objects, or int32 instance labels.
`segment` returns (H, W) int32 instance labels, 0 = background, 1..N objects. The reference
methods reproduce the notebook this project grew from (OpenCV, 8-bit copy of one channel: c1
for BBBC020 cells):

- ``threshold55``: ``cv2.threshold(img, 55, 255, THRESH_BINARY)`` (pixels > 55);
- ``otsu``: ``cv2.threshold(img, 0, 255, THRESH_BINARY + THRESH_OTSU)``;
- ``gaussian_otsu``: 5x5 Gaussian blur, then Otsu (the notebook ran plain Otsu twice by mistake);
- ``adaptive_gaussian``: ``cv2.adaptiveThreshold(img, 255, ADAPTIVE_THRESH_GAUSSIAN_C,
  THRESH_BINARY, 15, 2)``.

The strong method, ``watershed``, denoises, thresholds, cleans up and splits touching objects
with a marker-controlled watershed (`pipeline.segment.watershed`, settings `WatershedConfig`).

OpenCV and scikit-image are imported inside the methods: the registry's names are read where
nothing heavy may be imported (the Airflow trigger form's choices).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline.config import WatershedConfig
from pipeline.conventions import LABEL_SETS
from pipeline.errors import ConfigError


@dataclass(frozen=True)
class MethodInput:
    """One image for a method: `raw` (C, H, W) raw intensities (uint8, uint16 or float)."""

    raw: np.ndarray
    channels: list[str]  # names of the C channels, in order
    channel: str  # the channel single-channel methods use
    target: str  # "cells" | "nuclei"
    params: WatershedConfig = field(default_factory=WatershedConfig)

    def __post_init__(self) -> None:
        if self.raw.ndim != 3 or self.raw.shape[0] != len(self.channels):
            raise ValueError(
                f"raw must be (C, H, W) with C = {len(self.channels)} channels "
                f"{self.channels}; got shape {self.raw.shape}"
            )
        if self.channel not in self.channels:
            raise ValueError(f"channel {self.channel!r} is not among {self.channels}")
        if self.target not in LABEL_SETS:
            raise ValueError(f"target {self.target!r} must be one of {', '.join(LABEL_SETS)}")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """8-bit copy of an (H, W) image; uint8 is returned unchanged, others are min-max scaled."""
    if image.dtype == np.uint8:
        return image
    lo, hi = float(image.min()), float(image.max())
    return np.round((image.astype(np.float64) - lo) / max(hi - lo, 1e-9) * 255).astype(np.uint8)


def _single(x: MethodInput) -> np.ndarray:
    return to_uint8(x.raw[x.channels.index(x.channel)])


def threshold55(x: MethodInput) -> np.ndarray:
    import cv2

    return cv2.threshold(_single(x), 55, 255, cv2.THRESH_BINARY)[1]


def otsu(x: MethodInput) -> np.ndarray:
    import cv2

    return cv2.threshold(_single(x), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1]


def gaussian_otsu(x: MethodInput) -> np.ndarray:
    import cv2

    blurred = cv2.GaussianBlur(_single(x), (5, 5), 0)
    return cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1]


def adaptive_gaussian(x: MethodInput) -> np.ndarray:
    import cv2

    return cv2.adaptiveThreshold(
        _single(x), 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY, 15, 2
    )


def watershed(x: MethodInput) -> np.ndarray:
    from pipeline.segment.watershed import watershed_instances

    return watershed_instances(x.raw, x.channels, x.channel, x.target, x.params)


METHODS: dict[str, Callable[[MethodInput], np.ndarray]] = {
    "threshold55": threshold55,
    "otsu": otsu,
    "gaussian_otsu": gaussian_otsu,
    "adaptive_gaussian": adaptive_gaussian,
    "watershed": watershed,
}
REFERENCE_METHODS = ("threshold55", "otsu", "gaussian_otsu", "adaptive_gaussian")


def get_method(name: str) -> Callable[[MethodInput], np.ndarray]:
    try:
        return METHODS[name]
    except KeyError:
        valid = ", ".join(sorted(METHODS))
        raise ConfigError(f"unknown baseline method {name!r}; valid methods: {valid}") from None


def segment(name: str, x: MethodInput) -> np.ndarray:
    """Run method `name` -> (H, W) int32 labels 1..N (0 = background).

    Binary outputs (bool or uint8 masks) become 8-connected components.
    """
    from skimage.measure import label as connected_components
    from skimage.segmentation import relabel_sequential

    out = get_method(name)(x)
    if out.shape != x.raw.shape[1:]:
        raise ValueError(f"method {name} returned shape {out.shape}, expected {x.raw.shape[1:]}")
    if out.dtype in (np.uint8, np.bool_):
        return connected_components(out > 0).astype(np.int32)
    return relabel_sequential(out.astype(np.int32))[0]
