"""U-Net training stage (segmentation-models-pytorch), GPU when present.

The model predicts one logit per pixel: foreground of the target label set (cells or nuclei).
Inputs are the preprocessed (C, H, W) float32 images; training draws random crops with flips
and 90-degree rotations. The checkpoint with the best validation foreground IoU is kept::

    {"model": state_dict, "optimizer": state_dict, "config": cfg dict, "epoch": int,
     "arch": {...}, "channels": [...], "target": str, "val_fg_iou": float}
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.config import PipelineConfig
from pipeline.io import atomic_path
from pipeline.metrics import foreground_iou
from pipeline.predict import build_model, predict_foreground, resolve_device
from pipeline.preprocess import Sample, load_split
from pipeline.tracking import track

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    checkpoint: str
    best_epoch: int
    val_fg_iou: float
    device: str
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def random_batch(
    samples: list[Sample], target: str, crop: int, batch: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random augmented crops: images (B, C, crop, crop) float32, masks (B, 1, crop, crop)."""
    xs, ys = [], []
    for _ in range(batch):
        s = samples[rng.integers(len(samples))]
        img, mask = s.image, (s.labels[target] > 0).astype(np.float32)[None]
        _, h, w = img.shape
        if h < crop or w < crop:  # pad small images with zeros (background)
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
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    return bce + dice


def train(prepared_uri: str, cfg: PipelineConfig, run_dir: str, channels: list[str]) -> TrainResult:
    """Train a U-Net on the train split, select on val, save the best checkpoint in `run_dir`."""
    t, target = cfg.train, cfg.data.target
    train_set = [s for s in load_split(prepared_uri, "train") if target in s.labels]
    val_set = [s for s in load_split(prepared_uri, "val") if target in s.labels]
    if not train_set or not val_set:
        raise ValueError(
            f"need labelled '{target}' fields in train and val, got {len(train_set)} and "
            f"{len(val_set)}; check data.target and the dataset's labels"
        )
    torch.manual_seed(t.seed)
    rng = np.random.default_rng(t.seed)
    device = resolve_device(t.device)
    arch = {"encoder": t.encoder, "in_channels": len(channels), "classes": 1}
    model = build_model(**arch, encoder_weights=t.encoder_weights).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=t.lr, total_steps=t.epochs * t.steps_per_epoch
    )
    ckpt_path = Path(run_dir) / "train" / "model.pt"
    best_iou, best_epoch, start = -1.0, -1, time.perf_counter()
    log.info(
        "training %s U-Net on %s: %d train / %d val fields, %d epochs x %d steps",
        t.encoder,
        device,
        len(train_set),
        len(val_set),
        t.epochs,
        t.steps_per_epoch,
    )

    with track(cfg, run_dir, name=f"train-{Path(run_dir).name}", job_type="train") as tracker:
        for epoch in range(t.epochs):
            model.train()
            losses = []
            for _ in range(t.steps_per_epoch):
                x, y = random_batch(train_set, target, t.crop_size, t.batch_size, rng)
                loss = dice_bce_loss(model(x.to(device)), y.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())

            model.eval()
            val_iou = float(
                np.mean(
                    [
                        foreground_iou(
                            predict_foreground(model, s.image, device) > t.threshold,
                            s.labels[target],
                        )
                        for s in val_set
                    ]
                )
            )
            train_loss = float(np.mean(losses))
            tracker.log(
                {"train/loss": train_loss, "val/fg_iou": val_iou, "epoch": epoch}, step=epoch
            )
            log.info(
                "epoch %d/%d  loss %.4f  val fg IoU %.4f", epoch + 1, t.epochs, train_loss, val_iou
            )
            if val_iou > best_iou:
                best_iou, best_epoch = val_iou, epoch
                with atomic_path(ckpt_path) as tmp:
                    torch.save(
                        {
                            "model": model.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "config": cfg.to_dict(),
                            "epoch": epoch,
                            "arch": arch,
                            "channels": channels,
                            "target": target,
                            "threshold": t.threshold,
                            "val_fg_iou": val_iou,
                        },
                        tmp,
                    )
        tracker.summary({"best_val_fg_iou": best_iou, "best_epoch": best_epoch})
    seconds = time.perf_counter() - start
    log.info("best val fg IoU %.4f at epoch %d (%.1fs)", best_iou, best_epoch + 1, seconds)
    return TrainResult(str(ckpt_path), best_epoch, best_iou, str(device), seconds)
