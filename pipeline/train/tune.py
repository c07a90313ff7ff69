"""After training: choose how seeds are cut and which objects are too small on the validation
fields (as StarDist optimises its thresholds), so the card holds the settings that turn this
model's maps into the best instances."""

from __future__ import annotations

import dataclasses
import itertools
import logging

import numpy as np
import torch

from pipeline.evaluate.metrics import instance_scores
from pipeline.segment.card import ModelCard
from pipeline.segment.inference import card_maps
from pipeline.segment.postprocess import foreground, network_instances
from pipeline.segment.scale import median_diameter

log = logging.getLogger(__name__)

# (seed_threshold, seed_h): cores above a threshold, or h-maxima of the blurred distance
SEEDS = ((0.3, 0.0), (0.5, 0.0), (0.7, 0.0), (0.5, 0.05), (0.5, 0.1), (0.5, 0.2))
RELATIVE_SIZES = (0.0, 0.1, 0.2, 0.3)  # min_relative_size


def tune_seed_threshold(
    model: torch.nn.Module, val: tuple[list, list], device: torch.device, card: ModelCard
) -> ModelCard:
    """`card` with the seed settings (SEEDS) and size filter (RELATIVE_SIZES) that give the best
    mean F1@0.5 of the network's own instances on `val`: (C, H, W) images and their label
    images. Ties go to the earlier (simpler) candidate."""
    images, labels = val
    post = card.postprocess
    maps = [
        card_maps(model, x, device, card, objects=median_diameter(y))
        for x, y in zip(images, labels, strict=True)
    ]
    fgs = [foreground(m[0], post) for m in maps]
    best, best_f1 = post, -1.0
    for (threshold, h), rel in itertools.product(SEEDS, RELATIVE_SIZES):
        trial = dataclasses.replace(post, seed_threshold=threshold, seed_h=h, min_relative_size=rel)
        f1 = float(
            np.mean(
                [
                    instance_scores(network_instances(fg, m[1], trial), gt)["f1"]
                    for fg, m, gt in zip(fgs, maps, labels, strict=True)
                ]
            )
        )
        log.debug("seed threshold %.2f, h %.2f, relative size %.1f: F1 %.4f", threshold, h, rel, f1)
        if f1 > best_f1:
            best, best_f1 = trial, f1
    log.info(
        "post-processing chosen on the validation fields: seed threshold %.2f, seed h %.2f, "
        "min relative size %.1f (F1 %.4f)",
        best.seed_threshold,
        best.seed_h,
        best.min_relative_size,
        best_f1,
    )
    return dataclasses.replace(card, postprocess=best)
