"""Classical baseline stage: a registry of threshold methods, run on the test split.

Every method maps a raw (C, H, W) image to an (H, W) int32 instance label image (0 =
background); binary methods label connected components. The reference methods reproduce the
notebook this project grew from (OpenCV, 8-bit c1 channel):

- ``threshold55``: ``cv2.threshold(img, 55, 255, THRESH_BINARY)`` (pixels > 55);
- ``otsu``: ``cv2.threshold(img, 0, 255, THRESH_BINARY + THRESH_OTSU)``;
- ``gaussian_otsu``: 5x5 Gaussian blur, then Otsu (the notebook ran plain Otsu twice by mistake);
- ``adaptive_gaussian``: ``cv2.adaptiveThreshold(img, 255, ADAPTIVE_THRESH_GAUSSIAN_C,
  THRESH_BINARY, 15, 2)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from skimage.measure import label as connected_components

from pipeline.config import PipelineConfig
from pipeline.io import atomic_path, write_json, write_tif
from pipeline.preprocess import load_split, safe_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MethodInput:
    raw: np.ndarray  # (C, H, W) raw intensities
    channels: list[str]
    channel: str  # the channel single-channel methods use
    target: str  # "cells" | "nuclei"


def to_uint8(image: np.ndarray) -> np.ndarray:
    """8-bit copy of an (H, W) image; uint8 is returned unchanged, others are min-max scaled."""
    if image.dtype == np.uint8:
        return image
    lo, hi = float(image.min()), float(image.max())
    return np.round((image.astype(np.float64) - lo) / max(hi - lo, 1e-9) * 255).astype(np.uint8)


def _single(x: MethodInput) -> np.ndarray:
    return to_uint8(x.raw[x.channels.index(x.channel)])


def threshold55(x: MethodInput) -> np.ndarray:
    return cv2.threshold(_single(x), 55, 255, cv2.THRESH_BINARY)[1]


def otsu(x: MethodInput) -> np.ndarray:
    return cv2.threshold(_single(x), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1]


def gaussian_otsu(x: MethodInput) -> np.ndarray:
    blurred = cv2.GaussianBlur(_single(x), (5, 5), 0)
    return cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1]


def adaptive_gaussian(x: MethodInput) -> np.ndarray:
    return cv2.adaptiveThreshold(
        _single(x), 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY, 15, 2
    )


METHODS: dict[str, Callable[[MethodInput], np.ndarray]] = {
    "threshold55": threshold55,
    "otsu": otsu,
    "gaussian_otsu": gaussian_otsu,
    "adaptive_gaussian": adaptive_gaussian,
}


def get_method(name: str) -> Callable[[MethodInput], np.ndarray]:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown baseline method {name!r}; valid methods: {', '.join(sorted(METHODS))}") from None


def segment(name: str, x: MethodInput) -> np.ndarray:
    """Run method `name`; binary outputs become connected-component instance labels (int32)."""
    out = get_method(name)(x)
    if out.shape != x.raw.shape[1:]:
        raise ValueError(f"method {name} returned shape {out.shape}, expected {x.raw.shape[1:]}")
    if out.dtype == np.uint8 or out.max() <= 1 or out.dtype == bool:
        out = connected_components(out > 0)
    return out.astype(np.int32)


def run_baselines(prepared_uri: str, cfg: PipelineConfig, run_dir: str, channels: list[str],
                  target_channel: str) -> dict[str, str]:
    """Segment every test field with each configured method.

    Writes ``<run_dir>/predictions/<method>/<safe_id>.tif`` (uint16 labels) and returns
    ``{method: folder}``.
    """
    for name in cfg.baseline.methods:
        get_method(name)  # fail before any work on an unknown name
    channel = cfg.baseline.channel or target_channel
    if channel not in channels:
        raise ValueError(f"baseline.channel={channel!r} not among the prepared channels {channels}")
    samples = load_split(prepared_uri, "test")
    out = {}
    for name in cfg.baseline.methods:
        folder = Path(run_dir) / "predictions" / name
        with atomic_path(folder) as tmp:
            for s in samples:
                labels = segment(name, MethodInput(s.raw, channels, channel, cfg.data.target))
                write_tif(tmp / f"{safe_name(s.field_id)}.tif", labels.astype(np.uint16))
            write_json(tmp / "method.json", {"method": name, "channel": channel})
        out[name] = str(folder)
        log.info("baseline %s: %d test fields -> %s", name, len(samples), folder)
    return out
