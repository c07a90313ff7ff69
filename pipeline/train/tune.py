"""After training: choose the seed threshold on the validation fields (as StarDist optimises
its thresholds), so the card holds the value that splits this model's distance maps best."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from pipeline.evaluate.metrics import instance_scores
from pipeline.segment.card import ModelCard
from pipeline.segment.inference import predict_maps
from pipeline.segment.postprocess import foreground, network_instances

log = logging.getLogger(__name__)

CANDIDATES = (0.3, 0.4, 0.5, 0.6, 0.7)


def tune_seed_threshold(
    model: torch.nn.Module, val: tuple[list, list], device: torch.device, card: ModelCard
) -> ModelCard:
    """`card` with the seed threshold of CANDIDATES that gives the best mean F1@0.5 of the
    network's own instances on `val`: (C, H, W) images and their label images."""
    images, labels = val
    post = card.postprocess
    maps = [predict_maps(model, image, device, post) for image in images]
    scores = {}
    for t in CANDIDATES:
        trial = dataclasses.replace(post, seed_threshold=t)
        f1 = [
            instance_scores(network_instances(foreground(m[0], trial), m[1], trial), gt)["f1"]
            for m, gt in zip(maps, labels, strict=True)
        ]
        scores[t] = float(np.mean(f1))
    best = max(scores, key=lambda t: (scores[t], -abs(t - 0.5)))
    log.info("seed threshold on the validation fields: %s -> %.2f", scores, best)
    return dataclasses.replace(card, postprocess=dataclasses.replace(post, seed_threshold=best))
