"""Segmentation metrics. Inputs are (H, W) label images: 0 = background, >0 = object ids.

- ``foreground_iou``: |P & G| / |P | G| over all pixels of one image, with P = pred > 0 and
  G = gt > 0. This is the reference notebook's definition (pooled per image, then averaged
  over images by the caller). Two empty masks score 1.0.
- ``foreground_dice``: 2 |P & G| / (|P| + |G|), same conventions.
- ``crop_border``: the BBBC020 border policy, cropping a margin before scoring.
"""

from __future__ import annotations

import numpy as np


def _check(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {gt.shape}")
    if pred.ndim != 2:
        raise ValueError(f"expected (H, W) label images, got {pred.ndim}-D")


def foreground_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    _check(pred, gt)
    p, g = pred > 0, gt > 0
    union = np.logical_or(p, g).sum()
    return 1.0 if union == 0 else float(np.logical_and(p, g).sum() / union)


def foreground_dice(pred: np.ndarray, gt: np.ndarray) -> float:
    _check(pred, gt)
    p, g = pred > 0, gt > 0
    total = p.sum() + g.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(p, g).sum() / total)


def crop_border(array: np.ndarray, margin: int) -> np.ndarray:
    """Drop `margin` pixels from each edge of an (H, W) array (0 = no crop)."""
    if margin < 0 or 2 * margin >= min(array.shape[-2:]):
        raise ValueError(f"border margin {margin} does not fit an image of shape {array.shape}")
    return array[..., margin: array.shape[-2] - margin, margin: array.shape[-1] - margin] if margin else array


def score_image(pred: np.ndarray, gt: np.ndarray, border_margin: int = 0) -> dict[str, float]:
    """All metrics for one image after the border policy."""
    pred, gt = crop_border(pred, border_margin), crop_border(gt, border_margin)
    return {"fg_iou": foreground_iou(pred, gt), "fg_dice": foreground_dice(pred, gt)}
