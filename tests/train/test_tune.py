"""After training: the card gets the post-processing the validation fields choose."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from pipeline.config.sections import PostprocessConfig
from pipeline.segment.card import OUTPUTS, ModelCard
from pipeline.train.tune import (
    INTENSITIES,
    SEEDS,
    THRESHOLDS,
    Trial,
    one_standard_error_choice,
    tune_seed_threshold,
)


class _NoValleys(torch.nn.Module):
    """A stand-in network with the true foreground (the image is the label mask) and a flat
    distance map: nothing in its own maps parts touching objects."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([8.0 * (x[:, :1] - 0.5), torch.zeros_like(x[:, :1])], dim=1)


class _WideOutlines(torch.nn.Module):
    """A stand-in network whose foreground probability is 0.7 on the objects' true outline (the
    image is the blurred label mask, 0.5 there), so a 0.5 cut draws every object too large."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fg = 4.0 * (x[:, :1] - (0.5 - np.log(0.7 / 0.3) / 4.0))  # 0.5 about a pixel outside
        return torch.cat([fg, torch.zeros_like(fg)], dim=1)  # a flat distance: one seed each


def _apart_discs() -> np.ndarray:
    """(96, 96) int32 labels: four discs 22 px across, none touching another."""
    yy, xx = np.mgrid[:96, :96]
    labels = np.zeros((96, 96), np.int32)
    for i, (y, x) in enumerate([(24, 24), (24, 70), (70, 30), (68, 72)], 1):
        labels[np.hypot(yy - y, xx - x) < 11] = i
    return labels


def test_the_foreground_threshold_is_chosen_where_the_outlines_match_the_labels():
    labels = _apart_discs()
    image = ndi.gaussian_filter((labels > 0).astype(np.float32), 2.0)[None]
    card = ModelCard("resnet18", 1, list(OUTPUTS[:2]), ["fluo"], "nuclei", "fluo", 1.0, 99.8)
    tuned = tune_seed_threshold(_WideOutlines(), ([image], [labels]), torch.device("cpu"), card)
    assert 0.7 in THRESHOLDS and tuned.postprocess.threshold == 0.7
    assert card.postprocess.threshold == 0.5  # the card passed in is left as it was


def test_the_foreground_shape_is_mixed_in_when_the_distance_map_cannot_part_touching_objects():
    yy, xx = np.mgrid[:96, :128]
    labels = np.zeros((96, 128), np.int32)
    for i, (y, x) in enumerate([(28, 22), (28, 42), (70, 70), (70, 90)], 1):  # two touching pairs
        labels[(np.hypot(yy - y, xx - x) < 12) & (labels == 0)] = i
    assert ndi.label(labels > 0)[1] == 2
    image = (labels > 0).astype(np.float32)[None]
    card = ModelCard("resnet18", 1, list(OUTPUTS[:2]), ["fluo"], "nuclei", "fluo", 1.0, 99.8)
    tuned = tune_seed_threshold(_NoValleys(), ([image], [labels]), torch.device("cpu"), card)
    assert tuned.postprocess.seed_shape > 0 and tuned.postprocess.seed_h > 0


def test_when_the_validation_fields_cannot_tell_the_shape_term_is_kept():
    """Apart objects score alike with and without the shape term; the tie keeps it (the order
    of SEEDS), since another microscope's touching nuclei may need it."""
    labels = _apart_discs()
    image = (labels > 0).astype(np.float32)[None]
    card = ModelCard("resnet18", 1, list(OUTPUTS[:2]), ["fluo"], "nuclei", "fluo", 1.0, 99.8)
    tuned = tune_seed_threshold(_NoValleys(), ([image], [labels]), torch.device("cpu"), card)
    assert SEEDS[0][2] > 0 and tuned.postprocess.seed_shape == SEEDS[0][2]


class _Displaced(torch.nn.Module):
    """A stand-in network that is not flip-equivariant: its foreground is the image (the blurred
    label mask) displaced 6 px down and right, with a flat distance map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fg = 4.0 * (torch.roll(x[:, :1], (6, 6), (-2, -1)) - 0.5)
        return torch.cat([fg, torch.zeros_like(fg)], dim=1)


def test_a_card_with_flips_is_tuned_for_one_pass_too():
    """With flip TTA the four displaced copies average into a wider, softer disc, which a lower
    threshold draws best; one pass draws each disc whole but displaced, at 0.5 as well as any.
    The card keeps both choices; a card without flips is tuned once."""
    labels = _apart_discs()
    image = ndi.gaussian_filter((labels > 0).astype(np.float32), 2.0)[None]
    flips = PostprocessConfig(flip_tta=True)
    card = ModelCard("resnet18", 1, list(OUTPUTS[:2]), ["fluo"], "nuclei", "fluo", 1, 99.8, flips)
    val, cpu = ([image], [labels]), torch.device("cpu")
    tuned = tune_seed_threshold(_Displaced(), val, cpu, card)
    assert tuned.postprocess.flip_tta and tuned.postprocess.threshold == 0.4
    once = tune_seed_threshold(
        _Displaced(), val, cpu, replace(card, postprocess=PostprocessConfig())
    )
    assert once.postprocess_one_pass is None and tuned.postprocess_one_pass == once.postprocess
    assert once.postprocess.threshold == 0.5


class _FaintToo(torch.nn.Module):
    """A stand-in network drawing everything brighter than 0.05 (a faint object too) as
    foreground, with a flat distance map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fg = 40.0 * (x[:, :1] - 0.05)
        return torch.cat([fg, torch.zeros_like(fg)], dim=1)


@pytest.mark.parametrize("annotated", [False, True])
def test_a_faint_object_is_cut_only_when_the_truth_leaves_it_out(annotated):
    """Four discs at intensity 1 and a fifth at 0.1: where the truth leaves the faint one out
    (as GOWT1's does), the tuning cuts objects under a fifth of the typical intensity; where the
    truth draws it (as HeLa's does), nothing is cut."""
    labels = _apart_discs()
    yy, xx = np.mgrid[:96, :96]
    labels[np.hypot(yy - 48, xx - 48) < 8] = 5
    image = np.where(labels == 5, 0.1, (labels > 0).astype(np.float32))[None]
    truth = labels if annotated else np.where(labels == 5, 0, labels)
    # the tuning chooses the faint objects' cut anew and keeps the empty-field cut configured
    configured = PostprocessConfig(min_relative_intensity=0.1, min_field_contrast=3.5)
    card = ModelCard(
        "resnet18", 1, list(OUTPUTS[:2]), ["fluo"], "nuclei", "fluo", 1, 99.8, configured
    )
    tuned = tune_seed_threshold(_FaintToo(), ([image], [truth]), torch.device("cpu"), card)
    assert tuned.postprocess.min_relative_intensity == (0.0 if annotated else max(INTENSITIES))
    assert tuned.postprocess.min_field_contrast == 3.5


def _trial(h: float, field_scores: list[float], objects: int) -> Trial:
    return Trial(PostprocessConfig(seed_h=h), tuple(field_scores), objects)


def test_the_setting_drawing_fewest_objects_within_one_standard_error_of_the_best_is_chosen():
    """Fields scoring 0.90 and 0.92 give the best a standard error of 0.01: a setting 0.004
    below with fewer objects wins, one 0.02 below with fewer still does not."""
    best = _trial(0.02, [0.90, 0.92], 120)
    close = _trial(0.03, [0.896, 0.916], 110)
    far = _trial(0.1, [0.88, 0.90], 100)
    assert one_standard_error_choice([best, close, far]) is close
    assert one_standard_error_choice([best, far]) is best


def test_one_field_has_no_spread_so_the_best_wins_and_ties_go_to_the_earlier_trial():
    first, second, worse = _trial(0.02, [0.9], 50), _trial(0.03, [0.9], 50), _trial(0.05, [0.8], 1)
    assert one_standard_error_choice([first, second, worse]) is first
    with pytest.raises(ValueError, match="no post-processing trials"):
        one_standard_error_choice([])


def test_tuning_without_validation_fields_names_the_fix():
    card = ModelCard("resnet18", 1, list(OUTPUTS[:2]), ["fluo"], "nuclei", "fluo", 1.0, 99.8)
    with pytest.raises(ValueError, match="validation split"):
        tune_seed_threshold(_NoValleys(), ([], []), torch.device("cpu"), card)
