"""From output maps to instances: seeds from the distance map (threshold or h-maxima), the
surface they grow over, the relative size and intensity filters, and every instance method on
the same maps."""

import dataclasses

import numpy as np
import pytest
from scipy import ndimage as ndi

from pipeline.config import PostprocessConfig, sections
from pipeline.config.sections import INSTANCE_METHODS
from pipeline.errors import ConfigError
from pipeline.segment.card import OUTPUTS, ModelCard
from pipeline.segment.postprocess import (
    FLOODS,
    drop_small_objects,
    network_instances,
    objects_size,
    seed_scale,
    seed_surface,
    split_at_seeds,
    to_instances,
)
from pipeline.train.targets import normalised_distance


def _scene() -> np.ndarray:
    """Labels: two touching disks (r 14), one separate disk (r 12) and a 5 x 5 speck."""
    yy, xx = np.mgrid[:80, :120]
    lab = np.zeros((80, 120), np.int32)
    lab[np.hypot(yy - 30, xx - 25) < 14] = 1
    lab[np.hypot(yy - 30, xx - 50) < 14] = 2
    lab[np.hypot(yy - 40, xx - 95) < 12] = 3
    lab[70:75, 10:15] = 4
    return lab


@pytest.mark.parametrize(
    "seeds", [{"seed_threshold": 0.5, "seed_h": 0.0}, {"seed_h": 0.1, "seed_sigma": 1.0}]
)
def test_touching_objects_are_split_at_their_distance_valley(seeds):
    lab = _scene()
    post = PostprocessConfig(
        min_field_contrast=0.0, min_object_size=10, min_relative_size=0.0, **seeds
    )
    pred = network_instances(lab > 0, normalised_distance(lab), post)
    assert pred.max() == 4
    for i in (1, 2, 3):  # each object is one predicted object, the pair is parted
        ids, counts = np.unique(pred[lab == i], return_counts=True)
        assert counts.max() / counts.sum() > 0.95 and len(set(ids) - {0}) >= 1
    assert len(np.unique(pred[(lab == 1) | (lab == 2)])) == 2


def test_seeds_grow_over_the_surface_the_config_names():
    """One strip, two distance bumps (cores at x 25 and 75, valley at x 50) and a dip of the
    foreground probability at x 40: flooding the probability parts the objects at the dip,
    flooding the distance at its valley."""
    assert tuple(FLOODS) == sections.FLOOD_CHOICES  # the config's choices are the registry's names
    xx = np.arange(100, dtype=np.float32)
    fg = np.zeros((20, 100), bool)
    fg[5:15, 5:95] = True
    bumps = np.exp(-((xx - 25) ** 2) / 200) + np.exp(-((xx - 75) ** 2) / 200)
    dist = np.where(fg, bumps, 0).astype(np.float32)
    prob = np.where(fg, 0.9 - 0.5 * np.exp(-((xx - 40) ** 2) / 4), 0).astype(np.float32)
    post = PostprocessConfig(
        min_field_contrast=0.0, seed_h=0.0, seed_threshold=0.8, min_relative_size=0.0
    )
    parted_at = {}
    for flood in FLOODS:
        labels = network_instances(fg, dist, dataclasses.replace(post, flood=flood), prob=prob)
        assert labels.max() == 2, flood
        parted_at[flood] = 25 + int(np.flatnonzero(labels[10, 25:] != labels[10, 25])[0])
    assert abs(parted_at["foreground"] - 40) <= 1 and abs(parted_at["distance"] - 50) <= 1
    with pytest.raises(ConfigError, match="distance, foreground"):
        network_instances(fg, dist, dataclasses.replace(post, flood="flow"), prob=prob)


def test_the_seed_blur_is_measured_in_pixels_of_the_training_scale():
    """Two touching disks 16 px across, from a network trained on 40 px objects: a blur of 8
    training px is 3.2 px here and keeps their valley; 8 image px would fill it in."""
    yy, xx = np.mgrid[:60, :80]
    lab = np.zeros((60, 80), np.int32)
    lab[np.hypot(yy - 30, xx - 30) < 8] = 1
    lab[np.hypot(yy - 30, xx - 45) < 8] = 2
    post = PostprocessConfig(
        min_field_contrast=0.0, min_object_size=10, min_relative_size=0.0, seed_h=0.05, seed_sigma=8
    )
    fg, dist = lab > 0, normalised_distance(lab)
    size = objects_size(fg, post)
    assert seed_scale(size, 40.0) == pytest.approx(0.4, abs=0.03)
    assert seed_scale(size, 0.0) == 1.0  # a network trained without rescaling: image px
    # within the zooms inference applies: a field-wide foreground asks for no 100-px blur
    assert seed_scale(2000.0, 40.0) == 4.0 and seed_scale(2.0, 40.0) == 0.25
    assert network_instances(fg, dist, post, diameter=40.0).max() == 2
    assert network_instances(fg, dist, post, diameter=0.0).max() == 1


def test_the_foreground_shape_parts_a_pair_whose_predicted_distance_has_no_valley():
    """Two touching disks joined by a neck, and a distance map that missed the valley between
    them (one smooth bump over the pair, as a network's might): the distance alone gives one
    seed; mixed with the foreground's distance transform (seed_shape) the neck is a valley."""
    yy, xx = np.mgrid[:60, :90]
    fg = (np.hypot(yy - 30, xx - 30) < 14) | (np.hypot(yy - 30, xx - 55) < 14)
    bump = np.exp(-(((yy - 30) / 12.0) ** 2 + ((xx - 42.5) / 20.0) ** 2))
    dist = np.where(fg, bump, 0).astype(np.float32)
    post = PostprocessConfig(
        min_field_contrast=0.0, min_object_size=10, min_relative_size=0.0, seed_h=0.05, seed_sigma=1
    )
    assert objects_size(fg, post) == pytest.approx(28, abs=1)  # the larger disk's diameter
    assert network_instances(fg, dist, post, diameter=28.0).max() == 1
    shaped = network_instances(fg, dist, dataclasses.replace(post, seed_shape=4.0), 28.0)
    assert shaped.max() == 2
    assert len(np.unique(shaped[np.hypot(yy - 30, xx - 25) < 8])) == 1  # each core whole
    assert shaped[30, 25] != shaped[30, 60]
    assert objects_size(fg, dataclasses.replace(post, seed_h=0.0)) == 0.0  # not needed


def test_one_seed_surface_serves_every_depth_and_threshold():
    """Tuning computes `seed_surface` once per shape weight and blur, for all its depths and
    thresholds: the labels are the same as each setting computing its own."""
    lab = _scene()
    fg, dist = lab > 0, normalised_distance(lab) * np.float32(0.9)
    size = objects_size(fg, PostprocessConfig())
    for shape in (0.0, 4.0):
        first = PostprocessConfig(seed_shape=shape, seed_h=0.02, seed_sigma=2.0)
        for blurred, settings in ((True, [(0.5, 0.03), (0.5, 0.1)]), (False, [(0.6, 0.0)])):
            base = dataclasses.replace(first, seed_h=first.seed_h if blurred else 0.0)
            surface = seed_surface(base, fg, dist, size=size, diameter=30.0)
            for threshold, h in settings:
                post = dataclasses.replace(base, seed_threshold=threshold, seed_h=h)
                alone = split_at_seeds(fg, dist, post, size, 30.0)
                shared = split_at_seeds(fg, dist, post, size, 30.0, surface=surface)
                np.testing.assert_array_equal(shared, alone)
                assert alone.max() >= 3


def test_a_drawn_contact_parts_a_pair_whose_predicted_distance_has_no_valley():
    """The same pair and smooth bump, with a contact output that drew the band between the two
    disks: the distance times (1 - contact) has a valley there, and each disk is one object."""
    yy, xx = np.mgrid[:60, :90]
    fg = (np.hypot(yy - 30, xx - 30) < 14) | (np.hypot(yy - 30, xx - 55) < 14)
    bump = np.exp(-(((yy - 30) / 12.0) ** 2 + ((xx - 42.5) / 20.0) ** 2))
    contact = (np.abs(xx - 42.5) < 2.5) & fg
    maps = np.stack([fg, np.where(fg, bump, 0), contact]).astype(np.float32)
    post = PostprocessConfig(min_object_size=10, min_relative_size=0.0, seed_h=0.05, seed_sigma=1)
    card = ModelCard("resnet18", 1, list(OUTPUTS), ["fluo"], "nuclei", "fluo", 1.0, 99.8, post)
    two = to_instances(maps, maps[:1], card)
    assert two.max() == 2 and two[30, 25] != two[30, 60]
    without = dataclasses.replace(card, outputs=list(OUTPUTS[:2]))
    assert to_instances(maps[:2], maps[:1], without).max() == 1


def test_objects_much_smaller_than_the_image_typical_object_are_dropped():
    lab = _scene()
    base = PostprocessConfig(
        min_field_contrast=0.0, min_object_size=10, seed_h=0.0, min_relative_size=0.0
    )
    kept = network_instances(lab > 0, normalised_distance(lab), base)
    relative = dataclasses.replace(base, min_relative_size=0.2)
    dropped = network_instances(lab > 0, normalised_distance(lab), relative)
    assert kept.max() == 4 and dropped.max() == 3
    assert not dropped[70:75, 10:15].any()  # the speck (25 px, 5% of the median) is gone
    assert ndi.label(dropped > 0)[1] == 2  # the pair and the single disk remain


def test_specks_outnumbering_the_nuclei_do_not_shrink_the_size_filter():
    """Four nuclei (r 30, ~2800 px) among twenty specks (5 x 5): the plain median object is a
    speck, so a filter relative to it kept every speck (a gamma-lifted GOWT1 background); the
    typical object (area-weighted median) is a nucleus, and only the nuclei remain."""
    yy, xx = np.mgrid[:200, :300]
    lab = np.zeros((200, 300), np.int32)
    for i, (y, x) in enumerate([(50, 50), (50, 150), (140, 60), (140, 160)], start=1):
        lab[np.hypot(yy - y, xx - x) < 30] = i
    for j in range(20):
        y, x = 10 + 9 * j, 250 + 20 * (j % 2)
        lab[y : y + 5, x : x + 5] = 5 + j
    post = PostprocessConfig(min_field_contrast=0.0, min_object_size=10, min_relative_size=0.3)
    kept = drop_small_objects(lab, post)
    assert kept.max() == 4 and np.array_equal(kept > 0, lab.clip(0, 5) % 5 > 0)
    assert np.array_equal(
        drop_small_objects(lab, dataclasses.replace(post, min_relative_size=0)), lab
    )


def test_objects_much_dimmer_than_the_typical_object_are_dropped_when_asked():
    """Three disks at intensity 0.8 and one at 0.1 (an eighth): a cut at a fifth of the typical
    object's mean intensity drops the dim one, through the card's instances too; no cut keeps
    it; a cut without the image names what is missing."""
    lab, (yy, xx) = _scene(), np.mgrid[:80, :120]
    lab[lab == 4] = 0
    lab[np.hypot(yy - 62, xx - 70) < 10] = 4
    image = np.where(lab > 0, 0.8, 0.02).astype(np.float32)
    image[lab == 4] = 0.1
    post = PostprocessConfig(min_object_size=10, min_relative_size=0.0)
    assert drop_small_objects(lab, post, image).max() == 4
    dim = dataclasses.replace(post, min_relative_intensity=0.2)
    kept = drop_small_objects(lab, dim, image)
    assert kept.max() == 3 and not kept[lab == 4].any()
    assert np.array_equal(kept > 0, (lab > 0) & (lab != 4))
    with pytest.raises(
        ValueError, match=r"min_relative_intensity=0.2 need\(s\) the \(H, W\) image"
    ):
        drop_small_objects(lab, dim)
    maps = np.stack([(lab > 0).astype(np.float32), normalised_distance(lab)])
    card = ModelCard("resnet18", 1, list(OUTPUTS[:2]), ["fluo"], "nuclei", "fluo", 1.0, 99.8, dim)
    assert to_instances(maps, image[None], card).max() == 3


def test_every_instance_method_gives_labels_and_an_unknown_one_lists_them():
    """Every method draws the scene's objects; an unknown one is named with the valid ones;
    on an image of noise alone every method keeps none (the empty-field cut), all with it off."""
    lab = _scene()
    maps = np.stack([(lab > 0).astype(np.float32), normalised_distance(lab)])
    image = maps[:1]
    card = ModelCard("resnet18", 1, list(OUTPUTS[:2]), ["fluo"], "nuclei", "fluo", 1.0, 99.8)
    for method in INSTANCE_METHODS:
        out = to_instances(maps, image, card, method)
        assert out.shape == lab.shape and out.dtype == np.int32 and out.max() >= 2, method
    with pytest.raises(ConfigError, match="network, watershed, components"):
        to_instances(maps, image, card, "stardist")
    # the same maps over an image of noise alone: an empty field, whichever the method
    noise = np.random.default_rng(3).normal(0.3, 0.05, image.shape).astype(np.float32)
    uncut = dataclasses.replace(card, postprocess=PostprocessConfig(min_field_contrast=0.0))
    for method in INSTANCE_METHODS:
        assert to_instances(maps, noise, card, method).max() == 0, method
        assert to_instances(maps, noise, uncut, method).max() >= 2, method
