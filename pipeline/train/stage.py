"""Train stage: the shell around `pipeline.train.loop.train_seg` that does the I/O.

Reads the prepared train and val splits, builds the U-Net (`pipeline.segment.network`) and
trains. The epoch with the best validation foreground IoU is kept as the run's model folder
(``weights.safetensors`` + ``card.json``, `pipeline.segment.artifact`); every epoch also writes
the training state to the run's checkpoint::

    {"model": state_dict, "optimizer": state_dict, "config": cfg dict, "epoch": int,
     "val_fg_iou": float, "card": ModelCard dict}

Checkpoints hold tensors and plain values only, so they load with ``weights_only=True``.
Training is tracked with W&B (offline unless a key is set).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from pipeline.config import PipelineConfig
from pipeline.conventions import Record
from pipeline.errors import DataError
from pipeline.ingest.layouts import method_channel
from pipeline.io import atomic_path
from pipeline.preprocess.samples import load_split
from pipeline.rundir import RunDir
from pipeline.segment.artifact import model_id, save_model
from pipeline.segment.card import ModelCard
from pipeline.segment.network import build_model, resolve_device
from pipeline.tracking import track
from pipeline.train.loop import EpochResult, train_seg

log = logging.getLogger(__name__)


@dataclass
class TrainResult(Record):
    model_dir: str  # the best epoch's model folder
    model_id: str  # sha256 of its weights: the identity evaluation and the registry check
    checkpoint: str  # the last epoch's training state
    best_epoch: int
    val_fg_iou: float
    device: str
    seconds: float


def model_card(cfg: PipelineConfig, channels: list[str]) -> ModelCard:
    """The card of a network trained with `cfg` on `channels`."""
    target = cfg.data.target
    return ModelCard(
        encoder=cfg.train.encoder,
        in_channels=len(channels),
        classes=1,
        channels=list(channels),
        target=target,
        channel=method_channel(cfg.data.layout, target, cfg.baseline.channel, channels),
        low_percentile=cfg.preprocess.low_percentile,
        high_percentile=cfg.preprocess.high_percentile,
        postprocess=cfg.postprocess,
    )


def train(prepared_uri: str, cfg: PipelineConfig, run: RunDir, channels: list[str]) -> TrainResult:
    """Train a U-Net on the train split, select on val, save the best checkpoint at
    ``run.checkpoint``; tracked in the run folder."""
    t, target = cfg.train, cfg.data.target
    splits = {s: load_split(prepared_uri, s) for s in ("train", "val")}
    data = {s: [x for x in v if target in x.labels] for s, v in splits.items()}
    if not data["train"] or not data["val"]:
        raise DataError(
            f"need labelled '{target}' fields in train and val, got {len(data['train'])} and "
            f"{len(data['val'])}; check data.target and the dataset's labels"
        )
    device = resolve_device(t.device)
    card = model_card(cfg, channels)
    torch.manual_seed(t.seed)  # the same initial weights for the same seed
    model = build_model(**card.arch, encoder_weights=t.encoder_weights).to(device)
    ckpt_path, start = run.checkpoint, time.perf_counter()
    log.info(
        "training %s U-Net on %s: %d train / %d val fields, %d epochs x %d steps",
        t.encoder,
        device,
        len(data["train"]),
        len(data["val"]),
        t.epochs,
        t.steps_per_epoch,
    )
    with track(cfg, str(run.root), name=f"train-{run.run_id}", job_type="train") as tracker:

        def on_epoch(result: EpochResult, optimizer: torch.optim.Optimizer) -> None:
            values = {"train/loss": result.train_loss, "val/fg_iou": result.val_fg_iou}
            tracker.log({**values, "epoch": result.epoch}, step=result.epoch)
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "config": cfg.to_dict(),
                "epoch": result.epoch,
                "val_fg_iou": result.val_fg_iou,
                "card": card.to_dict(),
            }
            with atomic_path(ckpt_path) as tmp:
                torch.save(state, tmp)
            if result.improved:
                save_model(model, card, run.model)

        images = {s: [x.image for x in v] for s, v in data.items()}
        masks = {s: [x.labels[target] for x in v] for s, v in data.items()}
        history = train_seg(
            model,
            images["train"],
            masks["train"],
            images["val"],
            masks["val"],
            settings=t,
            device=device,
            threshold=cfg.postprocess.threshold,
            on_epoch=on_epoch,
        )
        best = history.best
        tracker.summary({"best_val_fg_iou": best.val_fg_iou, "best_epoch": best.epoch})
    seconds = time.perf_counter() - start
    log.info("best val fg IoU %.4f at epoch %d (%.1fs)", best.val_fg_iou, best.epoch + 1, seconds)
    return TrainResult(
        str(run.model),
        model_id(run.model),
        str(ckpt_path),
        best.epoch,
        best.val_fg_iou,
        str(device),
        seconds,
    )
