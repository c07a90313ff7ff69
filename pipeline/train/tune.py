"""After training: choose the foreground threshold, how seeds are cut and which objects are too
small on the validation fields (as StarDist optimises its thresholds), so the card holds the
settings that turn this model's maps into the best instances. The score is the mean of F1@0.5
(are the objects found) and mAP over IoU 0.5:0.95 (are their outlines right)."""

from __future__ import annotations

import dataclasses
import itertools
import logging

import numpy as np
import torch

from pipeline.evaluate.metrics import score_image
from pipeline.segment.card import ModelCard
from pipeline.segment.inference import card_maps
from pipeline.segment.postprocess import (
    drop_small_objects,
    foreground,
    split_at_seeds,
)
from pipeline.segment.scale import foreground_diameter, median_diameter

log = logging.getLogger(__name__)

# (seed_threshold, seed_h, seed_shape): h-maxima of the blurred distance with the foreground's
# shape mixed in, then without it, then cores above a threshold. The order breaks ties: the
# validation fields of one microscope may hold no touching pair that the shape term would
# part (GOWT1's scored exactly alike with and without it), and then it is kept, as a prior:
# the foreground's necks look alike under any microscope, the network's valleys may not.
CORES, DEPTHS, SHAPES = (0.5, 0.6, 0.7, 0.8), (0.02, 0.03, 0.05, 0.1), (1.0, 4.0, 0.0)
SEEDS = tuple((0.5, h, shape) for shape in SHAPES for h in DEPTHS) + tuple(
    (t, 0.0, 0.0) for t in CORES
)
RELATIVE_SIZES = (0.0, 0.1, 0.2, 0.3)  # min_relative_size
THRESHOLDS = (0.5, 0.4, 0.6, 0.7)  # foreground probability


def tune_seed_threshold(
    model: torch.nn.Module,
    val: tuple[list, list],
    device: torch.device,
    card: ModelCard,
    border_policy: str = "none",
) -> ModelCard:
    """`card` with the foreground threshold (THRESHOLDS), seed settings (SEEDS) and size filter
    (RELATIVE_SIZES) that score best (see the module docstring) on `val`: (C, H, W) images and
    their label images, scored under `border_policy`. Ties go to the earlier candidate (SEEDS)."""
    images, gts = val
    post = card.postprocess
    maps = [
        card_maps(model, x, device, card, objects=median_diameter(y))
        for x, y in zip(images, gts, strict=True)
    ]
    best, best_score = post, -1.0
    fgs, sizes = {}, {}  # per threshold: each field's foreground and its objects' size, once
    for t in THRESHOLDS:
        fgs[t] = [foreground(m[0], dataclasses.replace(post, threshold=t)) for m in maps]
        sizes[t] = [foreground_diameter(fg) for fg in fgs[t]]
    for fg_threshold, (seed, h, shape) in itertools.product(THRESHOLDS, SEEDS):
        cut = dataclasses.replace(
            post, threshold=fg_threshold, seed_threshold=seed, seed_h=h, seed_shape=shape
        )
        split = [
            split_at_seeds(fg, m[1], cut, size, card.diameter)
            for fg, m, size in zip(fgs[fg_threshold], maps, sizes[fg_threshold], strict=True)
        ]
        for rel in RELATIVE_SIZES:
            trial = dataclasses.replace(cut, min_relative_size=rel)
            scores = [
                score_image(drop_small_objects(labels, trial), gt, border_policy=border_policy)
                for labels, gt in zip(split, gts, strict=True)
            ]
            score = float(np.mean([(s["f1"] + s["map"]) / 2 for s in scores]))
            log.debug("%s: score %.4f", trial, score)
            if score > best_score:
                best, best_score = trial, score
    log.info(
        "post-processing chosen on the validation fields: foreground threshold %.2f, seed "
        "threshold %.2f, seed h %.2f, seed shape %.1f, min relative size %.1f (mean of F1 and "
        "mAP %.4f)",
        best.threshold,
        best.seed_threshold,
        best.seed_h,
        best.seed_shape,
        best.min_relative_size,
        best_score,
    )
    return dataclasses.replace(card, postprocess=best)
