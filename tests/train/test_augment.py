"""Augmentation: what it changes in the image and what it must leave alone in the labels."""

import dataclasses

import numpy as np
import pytest
from scipy import ndimage as ndi

from pipeline.config.training import AugmentConfig
from pipeline.train.augment import dim_objects, hide_invisible, random_crop
from pipeline.train.paste import paste_touching
from pipeline.train.targets import UNKNOWN, contact_band


def test_texture_darkens_parts_of_objects_and_leaves_the_labels_alone():
    only_texture = AugmentConfig(
        scale_min=1.0, scale_max=1.0, elastic=0, intensity=0, noise=0, blur=0, texture=1.0
    )
    image = np.ones((1, 64, 64), np.float32)
    labels = np.ones((64, 64), np.int32)  # one object filling the crop
    rng = np.random.default_rng(0)
    x, y = random_crop(image, labels, 64, only_texture, rng)
    assert x.shape == (1, 64, 64) and x.dtype == np.float32 and x.max() <= 1.0
    assert 0.05 < x.std() and x.min() < 0.8 < x.max()  # uneven, not a uniform dimming
    assert (y[16:48, 16:48] == 1).all()  # the affine turn may pad the corners, never split it


def test_a_zoomed_crop_keeps_the_labels_on_the_objects():
    """Image and labels are resized alike: the labels' centroid stays on the image's (OpenCV's
    plain nearest-neighbour resize put them half a pixel off, and the network learned it)."""
    yy, xx = np.mgrid[:200, :200]
    disk = np.hypot(yy - 100, xx - 100) < 60
    image, labels = disk[None].astype(np.float32), disk.astype(np.int32)
    geometric = AugmentConfig(enabled=False)
    for zoom in (0.7, 1.85):  # a GOWT1-sized field shrunk, a HeLa-sized one enlarged
        x, y = random_crop(image, labels, 96, geometric, np.random.default_rng(0), zoom=zoom)
        offset = np.subtract(ndi.center_of_mass(y > 0), ndi.center_of_mass(x[0]))
        assert np.abs(offset).max() < 0.15, (zoom, offset)  # 0.5 before


def test_dimmed_objects_keep_their_outline_and_the_background_its_level():
    """Each object chosen is dimmed by its own factor, never under `dimmest` of its contrast;
    the background and the labels stay."""
    yy, xx = np.mgrid[:64, :128]
    labels = (np.hypot(yy - 32, xx - 32) < 12).astype(np.int32)
    labels[np.hypot(yy - 32, xx - 96) < 12] = 2
    image = np.where(labels > 0, 0.9, 0.1).astype(np.float32)[None]
    dimmed, ids = dim_objects(image, labels, 1.0, np.random.default_rng(0), dimmest=0.5)
    assert ids.tolist() == [1, 2]
    assert dimmed.shape == image.shape and dimmed.dtype == np.float32
    assert np.allclose(dimmed[0][:, 60:68], 0.1)  # background between them untouched
    inside = [float(dimmed[0][32, c]) for c in (32, 96)]  # the objects' centres
    assert all(0.1 + 0.8 * 0.5 <= v < 0.9 for v in inside) and inside[0] != inside[1]
    same, none = dim_objects(image, labels, 0.0, np.random.default_rng(0))
    assert np.array_equal(same, image) and none.size == 0
    with pytest.raises(ValueError, match="dimmest must be in .0, 1.*got 0.0"):
        dim_objects(image, labels, 1.0, np.random.default_rng(0), dimmest=0.0)


def test_a_dimmed_object_lost_in_the_noise_is_unknown_not_an_object():
    """Of three dimmed objects on a background with noise of std 0.05, the one 0.5 above it
    stays an object, the ones 0.03 above it and at its level become UNKNOWN; an object not
    dimmed stays whatever its contrast, and `widths` 0 changes nothing."""
    rng = np.random.default_rng(0)
    labels = np.zeros((64, 256), np.int32)
    for i in range(4):
        labels[20:44, 20 + 60 * i : 44 + 60 * i] = i + 1
    lift = np.array([0.0, 0.5, 0.03, 0.0, 0.0], np.float32)  # by label: 0 is background
    image = (0.2 + lift[labels] + rng.normal(0, 0.05, labels.shape)).astype(np.float32)[None]
    hidden = hide_invisible(image, labels, np.array([1, 2, 3]), 2.0)
    assert [int(hidden[30, 30 + 60 * i]) for i in range(4)] == [1, UNKNOWN, UNKNOWN, 4]
    assert np.array_equal(hidden == 0, labels == 0)
    assert np.array_equal(hide_invisible(image, labels, np.array([1, 2, 3]), 0.0), labels)


def test_crops_can_be_drawn_around_touching_objects():
    """A field with one touching pair in a corner: with ``contact_crops`` 1 nearly every crop
    holds both objects of the pair (the random turn may push a sliver at the crop's edge out),
    with 0 (the default) few do."""
    labels = np.zeros((400, 400), np.int32)
    labels[10:30, 10:30], labels[10:30, 30:50] = 1, 2  # touching along x = 30
    image = (labels > 0)[None].astype(np.float32)
    contacts = np.argwhere(contact_band(labels))
    rng = np.random.default_rng(0)
    plain = AugmentConfig(scale_min=1.0, scale_max=1.0, elastic=0, intensity=0, noise=0, blur=0)
    around = dataclasses.replace(plain, contact_crops=1.0)

    def both(aug: AugmentConfig) -> int:
        crops = [random_crop(image, labels, 64, aug, rng, contacts=contacts)[1] for _ in range(40)]
        return sum({1, 2} <= set(np.unique(y).tolist()) for y in crops)

    assert both(around) >= 36 and both(plain) < 10


def test_pasted_copies_touch_a_neighbour_over_background_only():
    """Copy-paste: new objects are copies of the crop's own (same size, same pixels), each
    pressed against another object; existing objects, unknown pixels and the inputs stay."""
    yy, xx = np.mgrid[:120, :120]
    labels = np.zeros((120, 120), np.int32)
    labels[(yy - 30) ** 2 + (xx - 30) ** 2 < 100] = 1
    labels[(yy - 80) ** 2 + (xx - 85) ** 2 < 144] = 2
    labels[:, 115:] = UNKNOWN
    image = np.where(labels > 0, 0.5 + 0.4 * np.sin(xx / 2.0) ** 2, 0.05).astype(np.float32)[None]
    before = image.copy(), labels.copy()
    x, y = paste_touching(image, labels, 1.0, np.random.default_rng(0))
    np.testing.assert_array_equal(image, before[0])  # the inputs are not modified
    np.testing.assert_array_equal(labels, before[1])
    assert (y[labels != 0] == labels[labels != 0]).all()  # pasted over background only
    new = [i for i in np.unique(y) if i > 2]
    assert new, "no copy was pasted"
    areas = {int((labels == i).sum()) for i in (1, 2)}
    for i in new:
        assert int((y == i).sum()) in areas  # a whole copy of one of the objects
        assert (x[0][y == i] >= 0.5).all()  # with the object's pixels, not the background's
        near = ndi.binary_dilation(y == i, np.ones((5, 5), bool))
        assert ((y[near] > 0) & (y[near] != i)).any()  # within 2 px of another object
    assert contact_band(y).sum() > contact_band(labels).sum()
    same = paste_touching(image, labels, 0.0, np.random.default_rng(0))
    assert same[0] is image and same[1] is labels
    with pytest.raises(ValueError, match="train.augment.paste"):
        paste_touching(image, labels, 1.5, np.random.default_rng(0))
