"""Augmentation: what it changes in the image and what it must leave alone in the labels."""

import numpy as np

from pipeline.config.sections import AugmentConfig
from pipeline.train.augment import random_crop


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
