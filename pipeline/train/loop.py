"""The training loop on plain arrays (no folders, no tracking): cellpose's ``train_seg`` shape.

Inputs: images (C, H, W) float32 normalised to [0, 1], label images (H, W) (0 = background)
and a group per image (a sequence or condition; groups are drawn evenly). The network learns two
maps (`pipeline.train.targets`): foreground and the normalised distance to each object's edge.
Batches of augmented crops come from DataLoader workers (`pipeline.train.data`). After each
epoch the network's own instances are scored on the validation images (foreground IoU and F1 at
IoU 0.5; one network pass unless ``train.validation_flip_tta``) and ``on_epoch`` is told, so the
caller can checkpoint and log. With ``train.ema`` the scored (and kept) network is an
exponential moving average of the weights (timm's ``ModelEmaV3``). A non-finite loss stops the
run at once with `TrainingDiverged`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from timm.utils import ModelEmaV3

from pipeline.config import TrainConfig
from pipeline.errors import DataError
from pipeline.evaluate.metrics import score_image
from pipeline.segment.card import ModelCard
from pipeline.segment.inference import card_maps
from pipeline.segment.passes import autocast
from pipeline.segment.postprocess import to_instances
from pipeline.segment.scale import median_diameter
from pipeline.train.data import CropStream, batches, default_workers

log = logging.getLogger(__name__)
WARMUP = 0.3  # share of the steps in which the one-cycle learning rate rises to its peak


class TrainingDiverged(DataError):
    """The loss became NaN or infinite: retrying with the same settings cannot help."""


@dataclass
class EpochResult:
    epoch: int  # 0-based
    train_loss: float
    val_fg_iou: float  # of the network's foreground
    val_f1: float  # of the network's own instances at IoU 0.5
    improved: bool  # best validation score (mean of the two) so far
    data_wait: float  # share of the epoch's time the loop waited for batches
    seconds: float
    # mAP 0.5:0.95 of the network's own instances: reported, not in the score (None in
    # checkpoints written before 2026-12-05)
    val_map: float | None = None

    @property
    def score(self) -> float:
        return (self.val_fg_iou + self.val_f1) / 2


@dataclass
class TrainState:
    """Where a training stands: restored from a checkpoint to resume."""

    epoch: int = -1  # last finished epoch
    best_score: float = -1.0
    epochs_since_best: int = 0
    optimizer: dict | None = None
    scheduler: dict | None = None
    ema: dict | None = None  # the averaged weights' state dict (train.ema > 0)
    history: list[EpochResult] = field(default_factory=list)

    @property
    def best(self) -> EpochResult | None:
        done = [e for e in self.history if e.improved]
        return done[-1] if done else None


def dice_loss(prob: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """1 - the weighted soft Dice of `prob` against `target`: a pixel of weight w counts as w
    pixels, in the overlap as in both areas (weighing `prob` and `target` each and then
    multiplying them would count the overlap at w squared: with the contact weight, a pull
    towards foreground between touching objects, against the separation it is meant for)."""
    overlap = (weight * prob * target).sum()
    return 1 - (2 * overlap + 1) / ((weight * prob).sum() + (weight * target).sum() + 1)


def seg_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) logits against (B, 4, H, W) targets (`pipeline.train.targets.target_maps`):
    BCE + Dice on the foreground; when the network predicts the normalised distance (K >= 2)
    and the contact band (K = 3), BCE on each, averaged over its positive pixels and over the
    rest separately (`balanced_bce`), so the objects' insides, where the seeds are cut, and the
    thin bands between touching objects weigh as much as the wide background. Pixels of
    weight 0 (unannotated) count for nothing."""
    fg, weight = targets[:, :1], targets[:, 2:3]
    fg_logits = logits[:, :1]
    loss = bce(fg_logits, fg, weight) + dice_loss(torch.sigmoid(fg_logits.float()), fg, weight)
    if logits.shape[1] > 1:
        loss = loss + balanced_bce(logits[:, 1:2], targets[:, 1:2], fg, weight)
    if logits.shape[1] > 2:
        contact = targets[:, 3:4]
        loss = loss + balanced_bce(logits[:, 2:3], contact, contact, weight)
    return loss


def bce(logits: torch.Tensor, target: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of `logits` against soft `target`, averaged with weights `where`."""
    f = torch.nn.functional.binary_cross_entropy_with_logits
    return (f(logits.float(), target, reduction="none") * where).sum() / where.sum().clamp_min(1.0)


def balanced_bce(
    logits: torch.Tensor, target: torch.Tensor, part: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """`bce` averaged inside the {0, 1} `part` and outside it separately, then summed."""
    return bce(logits, target, weight * part) + bce(logits, target, weight * (1 - part))


def edge_policy(unlabelled_edge: bool) -> str:
    """How validation scores labels that skip objects touching the image edge: objects touching
    it are not counted (predicted ones may be real, unannotated nuclei); else "none"."""
    return "ignore_border_objects" if unlabelled_edge else "none"


def validation_scores(
    model: torch.nn.Module,
    images: list[np.ndarray],
    labels: list[np.ndarray],
    sizes: list[float],
    device: torch.device,
    card: ModelCard,
    precision: str,
    border_policy: str = "none",
) -> tuple[float, float, float]:
    """Mean foreground IoU, F1@0.5 and mAP 0.5:0.95 of the network's own instances on the
    images, each rescaled by its known object diameter in `sizes` (from its labels: the score
    is the network's, not the size estimate's), scored under `border_policy` (margin 0)."""
    scores = []
    for image, gt, size in zip(images, labels, sizes, strict=True):
        pred = to_instances(card_maps(model, image, device, card, precision, size), image, card)
        scores.append(score_image(pred, gt, border_policy=border_policy))
    iou, f1, ap = (float(np.mean([s[k] for s in scores])) for k in ("fg_iou", "f1", "map"))
    return iou, f1, ap


def train_seg(
    model: torch.nn.Module,
    train: tuple[list[np.ndarray], list[np.ndarray], list[str]],
    val: tuple[list[np.ndarray], list[np.ndarray]],
    settings: TrainConfig,
    device: torch.device,
    card: ModelCard,
    on_epoch: Callable[[EpochResult, TrainState, torch.nn.Module], None] | None = None,
    state: TrainState | None = None,
    unlabelled_edge: bool = False,
) -> TrainState:
    """Train `model` (already on `device`) in place; returns the final state.

    `train` = (images, label images, groups), `val` = (images, label images). AdamW with a
    one-cycle learning rate over ``epochs x steps_per_epoch`` steps of ``batch_size`` crops of
    ``crop_size``; stops early after ``patience`` epochs without improvement (0: never),
    counting only epochs after the one in which the learning rate peaks.
    `state` resumes a training from its last finished epoch. `unlabelled_edge`: the labels skip
    objects touching the image edge (`edge_policy`). ``on_epoch(result, state, scored)`` gets
    the network validated this epoch (the weights' moving average with ``ema`` > 0). (One long
    function on purpose: the loop reads top to bottom, step by step, as in nanoGPT.)
    """
    t = settings
    if not train[0] or not val[0]:
        raise DataError(
            f"need training and validation images, got {len(train[0])} and {len(val[0])}"
        )
    state = state or TrainState()
    stream = CropStream(
        *train,
        crop=t.crop_size,
        aug=t.augment,
        seed=t.seed,
        diameter=card.diameter,
        unlabelled_edge=unlabelled_edge,
        contact_weight=t.contact_weight,
        group_weights=t.group_weights,
    )
    val_sizes = [median_diameter(y) for y in val[1]]  # measured once, used every epoch
    val_card = card
    if card.postprocess.flip_tta and not t.validation_flip_tta:
        val_card = replace(card, postprocess=replace(card.postprocess, flip_tta=False))
        log.info(
            "each epoch is validated with one network pass; the tuning after training and "
            "predictions use the card's flips (train.validation_flip_tta: true adds them here)"
        )
    workers = default_workers(t.workers)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if t.compile else model
    ema = ModelEmaV3(model, decay=t.ema, use_warmup=True) if t.ema else None
    if ema is not None and state.ema is not None:
        ema.module.load_state_dict(state.ema)
    scored = ema.module if ema is not None else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=t.lr, total_steps=t.epochs * t.steps_per_epoch, pct_start=WARMUP
    )
    peak = math.ceil(WARMUP * t.epochs) - 1  # the epoch in which the learning rate peaks
    if state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
        # the step reached, on this run's schedule: a resume may have been given more epochs
        length = ("total_steps", "_schedule_phases")
        scheduler.load_state_dict({k: v for k, v in state.scheduler.items() if k not in length})
    for epoch in range(state.epoch + 1, t.epochs):
        model.train()
        start, wait, losses = time.perf_counter(), 0.0, []
        data = batches(stream, t.batch_size, workers, epoch, pin=cuda)
        for step in range(t.steps_per_epoch):
            tick = time.perf_counter()
            x, y = next(data)
            x = x.to(device, non_blocking=True)
            x = x.to(memory_format=torch.channels_last) if cuda else x
            y = y.to(device, non_blocking=True)
            wait += time.perf_counter() - tick
            with autocast(device, t.precision):
                loss = seg_loss(net(x), y)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"training diverged: the loss is {loss.item()} at epoch {epoch + 1}, step "
                    f"{step + 1} (learning rate {scheduler.get_last_lr()[0]:.3g}); lower "
                    f"train.lr (now {t.lr:g}) or check the training images for NaN or inf"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update(model, step=epoch * t.steps_per_epoch + step + 1)
            losses.append(loss.item())
        del data  # ends this epoch's worker processes

        iou, f1, ap = validation_scores(
            scored, *val, val_sizes, device, val_card, t.precision, edge_policy(unlabelled_edge)
        )
        seconds = time.perf_counter() - start
        mean_loss = float(np.mean(losses))
        result = EpochResult(epoch, mean_loss, iou, f1, False, wait / seconds, seconds, ap)
        result.improved = result.score > state.best_score
        state.best_score = max(state.best_score, result.score)
        state.epochs_since_best = 0 if result.improved else state.epochs_since_best + 1
        state.epoch, state.optimizer, state.scheduler = (
            epoch,
            optimizer.state_dict(),
            scheduler.state_dict(),
        )
        state.ema = ema.module.state_dict() if ema is not None else None
        state.history.append(result)
        log.info(
            "epoch %d/%d  loss %.4f  val fg IoU %.4f  F1 %.4f  mAP %.4f  waited for data %.0f%%  "
            "%.1fs",
            epoch + 1,
            t.epochs,
            result.train_loss,
            iou,
            f1,
            ap,
            100 * result.data_wait,
            seconds,
        )
        if on_epoch is not None:
            on_epoch(result, state, scored)
        # the rise to the peak learning rate does not count: validation wanders while it climbs
        if t.patience and min(state.epochs_since_best, epoch - peak) >= t.patience:
            log.info(
                "no improvement for %d epochs past the peak learning rate: stopping", t.patience
            )
            break
    return state
