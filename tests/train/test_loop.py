"""The training loop on plain arrays: batches, loss, and train_seg without any folder."""

import numpy as np
import pytest
import torch

from pipeline.config import TrainConfig
from pipeline.segment.network import build_model
from pipeline.train.loop import dice_bce_loss, random_batch, train_seg


def _discs(n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`n` (1, 64, 64) images with a bright disc each, and their (64, 64) label images."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    images, masks = [], []
    for _ in range(n):
        cy, cx, r = rng.integers(16, 48, 2).tolist() + [int(rng.integers(6, 14))]
        mask = (np.hypot(yy - cy, xx - cx) < r).astype(np.int32)
        image = (0.7 * mask + rng.normal(0.1, 0.05, mask.shape)).clip(0, 1)
        images.append(image[None].astype(np.float32))
        masks.append(mask)
    return images, masks


def test_random_batch_shapes():
    images, masks = _discs(3, 0)
    images = [np.concatenate([i, i]) for i in images]  # two channels
    x, y = random_batch(images, masks, 32, 5, np.random.default_rng(0))
    assert x.shape == (5, 2, 32, 32) and x.dtype == torch.float32
    assert y.shape == (5, 1, 32, 32) and set(torch.unique(y).tolist()) <= {0.0, 1.0}
    small, _ = random_batch(images, masks, 96, 1, np.random.default_rng(0))  # padded
    assert small.shape == (1, 2, 96, 96)


def test_loss_is_lower_for_right_answer():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1
    good, bad = (target * 20 - 10), (10 - target * 20)
    assert dice_bce_loss(good, target) < dice_bce_loss(bad, target)


def test_train_seg_on_plain_arrays_reports_every_epoch():
    images, masks = _discs(6, 1)
    settings = TrainConfig(epochs=2, steps_per_epoch=3, batch_size=2, crop_size=64, lr=3e-3)
    torch.manual_seed(0)
    model = build_model("resnet18", in_channels=1, classes=1)
    seen = []
    history = train_seg(
        model,
        images[:4],
        masks[:4],
        images[4:],
        masks[4:],
        settings,
        torch.device("cpu"),
        on_epoch=lambda result, optimizer: seen.append((result.epoch, type(optimizer).__name__)),
    )
    assert seen == [(0, "AdamW"), (1, "AdamW")]
    assert [e.epoch for e in history.epochs] == [0, 1]
    assert history.epochs[0].improved and 0 <= history.best.val_fg_iou <= 1
    with pytest.raises(ValueError, match="need training and validation images"):
        train_seg(model, [], [], images, masks, settings, torch.device("cpu"))
