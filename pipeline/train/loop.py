"""The training loop on plain arrays (no folders, no tracking): cellpose's ``train_seg`` shape.

Inputs: images (C, H, W) float32 normalised to [0, 1], masks (H, W) with foreground > 0 (label
images work). The network predicts one logit per pixel (foreground). Training draws random
crops with flips and 90-degree rotations; after each epoch the validation foreground IoU is
measured and ``on_epoch`` is told, so the caller can checkpoint and log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from pipeline.config import TrainConfig
from pipeline.evaluate.metrics import foreground_iou
from pipeline.segment.inference import predict_foreground

log = logging.getLogger(__name__)


@dataclass
class EpochResult:
    epoch: int  # 0-based
    train_loss: float
    val_fg_iou: float
    improved: bool  # best validation score so far


@dataclass
class TrainHistory:
    epochs: list[EpochResult] = field(default_factory=list)

    @property
    def best(self) -> EpochResult:
        return max(self.epochs, key=lambda e: (e.val_fg_iou, -e.epoch))


def random_batch(
    images: list[np.ndarray],
    masks: list[np.ndarray],
    crop: int,
    batch: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random augmented crops: images (B, C, crop, crop) float32, masks (B, 1, crop, crop) in
    {0, 1}. Images smaller than the crop are padded with zeros (background)."""
    xs, ys = [], []
    for _ in range(batch):
        i = rng.integers(len(images))
        img, mask = images[i], (masks[i] > 0).astype(np.float32)[None]
        _, h, w = img.shape
        if h < crop or w < crop:
            pad = ((0, 0), (0, max(0, crop - h)), (0, max(0, crop - w)))
            img, mask = np.pad(img, pad), np.pad(mask, pad)
            _, h, w = img.shape
        y0, x0 = rng.integers(h - crop + 1), rng.integers(w - crop + 1)
        img, mask = img[:, y0 : y0 + crop, x0 : x0 + crop], mask[:, y0 : y0 + crop, x0 : x0 + crop]
        k = int(rng.integers(4))
        img, mask = np.rot90(img, k, (1, 2)), np.rot90(mask, k, (1, 2))
        if rng.random() < 0.5:
            img, mask = img[:, :, ::-1], mask[:, :, ::-1]
        xs.append(img.copy())
        ys.append(mask.copy())
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice loss of (B, 1, H, W) logits against {0, 1} targets."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    return bce + dice


def validation_iou(
    model: torch.nn.Module,
    images: list[np.ndarray],
    masks: list[np.ndarray],
    device: torch.device,
    threshold: float,
) -> float:
    """Mean foreground IoU of the thresholded prediction over the validation images."""
    return float(
        np.mean(
            [
                foreground_iou(predict_foreground(model, img, device) > threshold, mask)
                for img, mask in zip(images, masks, strict=True)
            ]
        )
    )


def train_seg(
    model: torch.nn.Module,
    train_images: list[np.ndarray],
    train_masks: list[np.ndarray],
    val_images: list[np.ndarray],
    val_masks: list[np.ndarray],
    settings: TrainConfig,
    device: torch.device,
    threshold: float = 0.5,
    on_epoch: Callable[[EpochResult, torch.optim.Optimizer], None] | None = None,
) -> TrainHistory:
    """Train `model` (already on `device`) in place: AdamW with a one-cycle learning rate,
    ``settings.epochs`` x ``settings.steps_per_epoch`` steps of ``settings.batch_size`` random
    crops of ``settings.crop_size``, drawn with a generator seeded by ``settings.seed``."""
    if not train_images or not val_images:
        raise ValueError(
            f"need training and validation images, got {len(train_images)} and {len(val_images)}"
        )
    t = settings
    rng = np.random.default_rng(t.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=t.lr, total_steps=t.epochs * t.steps_per_epoch
    )
    history, best = TrainHistory(), -1.0
    for epoch in range(t.epochs):
        model.train()
        losses = []
        for _ in range(t.steps_per_epoch):
            x, y = random_batch(train_images, train_masks, t.crop_size, t.batch_size, rng)
            loss = dice_bce_loss(model(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())

        model.eval()
        val_iou = validation_iou(model, val_images, val_masks, device, threshold)
        result = EpochResult(epoch, float(np.mean(losses)), val_iou, val_iou > best)
        best = max(best, val_iou)
        history.epochs.append(result)
        log.info(
            "epoch %d/%d  loss %.4f  val fg IoU %.4f",
            epoch + 1,
            t.epochs,
            result.train_loss,
            val_iou,
        )
        if on_epoch is not None:
            on_epoch(result, optimizer)
    return history
