"""After training: choose the foreground threshold, how seeds are cut and which objects are too
small on the validation fields (as StarDist optimises its thresholds), so the card holds the
settings that turn this model's maps into the best instances; then, with those, which objects
are too dim (`min_relative_intensity`: an annotation may leave faint, out-of-focus nuclei out,
as the CTC GOWT1 silver truth does, or draw them, as HeLa's does down to a tenth of the typical
nucleus). The score is the mean of F1@0.5 (are the objects found) and mAP over IoU 0.5:0.95
(are their outlines right).

The choice follows the one-standard-error rule of cross-validated model choice (Breiman et al.,
1984): of the settings scoring within one standard error (over the fields) of the best, the
simplest, here the one that draws the fewest objects (splits and keeps least). A cut the
validation fields do not clearly ask for is not made on a microscope they do not show: trained
on HeLa alone, the best-scoring setting and one 0.002 below it parted GOWT1's large textured
nuclei into 0.826 and 0.896 F1 (docs/experiments.md, leave one dataset out)."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from pipeline.config.sections import PostprocessConfig
from pipeline.evaluate.metrics import score_image, truth_for_many
from pipeline.segment.card import ModelCard
from pipeline.segment.filters import edt, parts
from pipeline.segment.inference import card_maps
from pipeline.segment.postprocess import (
    drop_small_objects,
    foreground,
    seed_distance,
    seed_surface,
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
# min_relative_intensity, tried after the rest is chosen. Capped at a fifth of the typical
# object's mean intensity: on the CTC validation frames 0.3 scored higher still (GOWT1's
# unannotated nuclei lie at 0.18-0.25, its annotated ones from 0.22) and cost HeLa's test
# frames 0.02 foreground IoU (docs/experiments.md).
INTENSITIES = (0.0, 0.1, 0.2)


def tune_seed_threshold(
    model: torch.nn.Module,
    val: tuple[list, list],
    device: torch.device,
    card: ModelCard,
    border_policy: str = "none",
) -> ModelCard:
    """`card` with the foreground threshold (THRESHOLDS), seed settings (SEEDS) and size filter
    (RELATIVE_SIZES), then the intensity filter (INTENSITIES), chosen on `val` ((C, H, W)
    images and their label images, scored under `border_policy`) by the one-standard-error rule
    (module docstring). Where the card's flip TTA is on, chosen for one network pass as well
    (``postprocess_one_pass``), so that a prediction turning the flips off, for speed on a CPU,
    uses the settings chosen for what it runs. One pass on the test frames, with the flips'
    settings and with its own (docs/experiments.md): HeLa's mAP 0.799 and 0.809 (seed 6), 0.794
    and 0.788 (seed 5); GOWT1's 0.894 and 0.896, 0.894 and 0.899."""
    images, gts = val
    if not images or len(images) != len(gts):
        raise ValueError(
            f"tuning needs validation images with one label image each; got {len(images)} "
            f"images and {len(gts)} label images (give the dataset a validation split)"
        )
    cards = [card]
    if card.postprocess.flip_tta:
        post = dataclasses.replace(card.postprocess, flip_tta=False)
        cards.append(dataclasses.replace(card, postprocess=post))
    # the truth's half of the border policy once per field, not in each of the ~260 trials
    truths = [truth_for_many(gt, border_policy) for gt in gts]
    scored_gts, policy = [gt for gt, _ in truths], truths[0][1]
    chosen = []
    for c in cards:
        maps = [
            card_maps(model, x, device, c, objects=median_diameter(y))
            for x, y in zip(images, gts, strict=True)
        ]
        chosen.append(_chosen(c, maps, images, scored_gts, policy))
    one_pass = chosen[1] if len(chosen) > 1 else None
    return dataclasses.replace(card, postprocess=chosen[0], postprocess_one_pass=one_pass)


def _chosen(
    card: ModelCard,
    maps: list[np.ndarray],
    images: list[np.ndarray],
    gts: list[np.ndarray],
    border_policy: str,
) -> PostprocessConfig:
    """`card`'s post-processing with the settings chosen on the fields' (C, H, W) `images`,
    the network's (K, H, W) `maps` of them (as `card` runs it) and their label images `gts`
    (the truth's half of `border_policy` applied: `truth_for_many`)."""
    # the intensity cuts come last: the empty-field one as the card has it (not tuned: every
    # validation field has nuclei), the dim objects' chosen
    post = dataclasses.replace(card.postprocess, min_relative_intensity=0.0, min_field_contrast=0.0)
    dists = [seed_distance(m, card.outputs) for m in maps]
    trials: list[Trial] = []
    for fg_threshold in THRESHOLDS:  # each field's foreground, distances and size, once
        fgs = [foreground(m[0], dataclasses.replace(post, threshold=fg_threshold)) for m in maps]
        fg_parts = [parts(fg) for fg in fgs]
        insides = [edt(fg, p) for fg, p in zip(fgs, fg_parts, strict=True)]
        sizes = [foreground_diameter(*field) for field in zip(fgs, insides, fg_parts, strict=True)]
        surfaces: dict[tuple[float, bool], list[np.ndarray]] = {}  # one per shape and blur
        for seed, h, shape in SEEDS:
            cut = dataclasses.replace(
                post, threshold=fg_threshold, seed_threshold=seed, seed_h=h, seed_shape=shape
            )
            if (shape, h > 0) not in surfaces:
                fields = zip(fgs, dists, sizes, insides, strict=True)
                surfaces[shape, h > 0] = [
                    seed_surface(cut, fg, dist, size=size, diameter=card.diameter, inside=inside)
                    for fg, dist, size, inside in fields
                ]
            fields = zip(fgs, dists, sizes, maps, fg_parts, surfaces[shape, h > 0], strict=True)
            split = [
                split_at_seeds(fg, d, cut, size, card.diameter, m[0], fg_parts=part, surface=surf)
                for fg, d, size, m, part, surf in fields
            ]
            for rel in RELATIVE_SIZES:
                trial = dataclasses.replace(cut, min_relative_size=rel)
                labels = [drop_small_objects(x, trial) for x in split]
                trials.append(scored(trial, labels, gts, border_policy))
    best = one_standard_error_choice(trials)
    # then, with those settings, the dim objects' cut (INTENSITIES), by the same rule
    fgs = [foreground(m[0], best.post) for m in maps]
    split = [
        split_at_seeds(fg, dist, best.post, foreground_diameter(fg), card.diameter, m[0])
        for fg, dist, m in zip(fgs, dists, maps, strict=True)
    ]
    dims = []
    for cut in INTENSITIES:
        trial = dataclasses.replace(
            best.post,
            min_relative_intensity=cut,
            min_field_contrast=card.postprocess.min_field_contrast,
        )
        labels = [
            drop_small_objects(x, trial, image[card.channel_index])
            for x, image in zip(split, images, strict=True)
        ]
        dims.append(scored(trial, labels, gts, border_policy))
    chosen = one_standard_error_choice(dims)
    p = chosen.post
    log.info(
        "post-processing chosen on the validation fields (%s): foreground threshold %.2f, seed "
        "threshold %.2f, seed h %.2f, seed shape %.1f, min relative size %.1f (mean of F1 and "
        "mAP %.4f, best %.4f; %d objects), then min relative intensity %.1f (%.4f, best %.4f)",
        "flip TTA" if p.flip_tta else "one network pass",
        p.threshold,
        p.seed_threshold,
        p.seed_h,
        p.seed_shape,
        p.min_relative_size,
        best.score,
        max(t.score for t in trials),
        best.objects,
        p.min_relative_intensity,
        chosen.score,
        max(t.score for t in dims),
    )
    return p


def scored(
    post: PostprocessConfig, labels: list[np.ndarray], gts: list[np.ndarray], border_policy: str
) -> Trial:
    """The `Trial` of `post`, which drew the (H, W) `labels` on fields whose truth is `gts`."""
    scores = [
        score_image(x, gt, border_policy=border_policy) for x, gt in zip(labels, gts, strict=True)
    ]
    objects = sum(len(np.unique(x[x > 0])) for x in labels)
    trial = Trial(post, tuple((s["f1"] + s["map"]) / 2 for s in scores), objects)
    log.debug("%s: score %.4f, %d objects", post, trial.score, objects)
    return trial


@dataclasses.dataclass(frozen=True)
class Trial:
    """One candidate post-processing: its per-field scores (mean of F1 and mAP) and the number
    of objects it draws on the validation fields."""

    post: PostprocessConfig
    field_scores: tuple[float, ...]
    objects: int

    @property
    def score(self) -> float:
        return float(np.mean(self.field_scores))


def one_standard_error_choice(trials: list[Trial]) -> Trial:
    """The trial drawing the fewest objects among those scoring within one standard error of the
    best trial's mean (its fields' sample deviation / sqrt(fields); 0 for one field). Ties go to
    the earlier trial, so the order of SEEDS decides between settings that draw alike."""
    if not trials:
        raise ValueError("no post-processing trials to choose from")
    best = max(trials, key=lambda t: t.score)  # the first of equals
    n = len(best.field_scores)
    se = float(np.std(best.field_scores, ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    near = [t for t in trials if t.score >= best.score - se]
    return min(near, key=lambda t: t.objects)  # min keeps the first of equals
