"""Train stage: the shell around `pipeline.train.loop.train_seg` that does the I/O.

Reads the prepared train and val splits, builds the U-Net (`pipeline.segment.network`) and
trains. After every epoch the training state is written atomically to the run's checkpoint::

    {"model", "optimizer", "scheduler": state dicts, "epoch": int, "state": {...},
     "identity": {"run_id", "dataset_id", "config"}, "card": ModelCard dict}

so a killed training resumes from its last finished epoch; a checkpoint of another run, dataset
or configuration is never resumed (the run stops and says so). The epoch with the best
validation score is kept as the run's model folder (``weights.safetensors`` + ``card.json``,
`pipeline.segment.artifact`). Checkpoints hold tensors and plain values only
(``torch.load(weights_only=True)``). Training is tracked with W&B (offline unless a key is set).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.atomic import atomic_path, disk_full_is_data_error, remove_temporaries
from pipeline.config import PipelineConfig
from pipeline.conventions import Record
from pipeline.errors import DataError
from pipeline.ingest.layouts import method_channel
from pipeline.preprocess.samples import load_split, views
from pipeline.rundir import RunDir
from pipeline.segment.artifact import load_model, model_id, save_model
from pipeline.segment.card import OUTPUTS, ModelCard
from pipeline.segment.network import build_model, resolve_device
from pipeline.segment.scale import LIMITS, median_diameter
from pipeline.tracking import track
from pipeline.train.loop import EpochResult, TrainState, edge_policy, train_seg
from pipeline.train.tune import tune_seed_threshold

log = logging.getLogger(__name__)


@dataclass
class TrainResult(Record):
    model_dir: str  # the best epoch's model folder
    model_id: str  # sha256 of its weights: the identity evaluation and the registry check
    checkpoint: str  # the last epoch's training state
    best_epoch: int
    val_fg_iou: float
    val_f1: float
    epochs_run: int
    resumed_from: int  # epochs already done when this call started (0: a fresh start)
    data_wait: float  # share of training time spent waiting for batches
    device: str
    seconds: float
    wandb_run: str | None = None  # project/run id when tracked


def training_diameter(cfg: PipelineConfig, labels: list, groups: list[str]) -> float:
    """The object diameter (px) the network learns: ``train.object_diameter``, or the largest
    of the groups' median object diameters, so that no dataset is shrunk and outlines keep
    every pixel they have (smaller objects are enlarged instead), but at most
    ``scale.LIMITS[1]`` times the smallest, the most inference enlarges an image, and at least
    ``train.min_object_diameter`` (within that limit too); 0.0 with ``train.rescale`` off or
    no objects."""
    if not cfg.train.rescale:
        return 0.0
    if cfg.train.object_diameter:
        return float(cfg.train.object_diameter)
    by_group: dict[str, list[float]] = {}
    for lab, group in zip(labels, groups, strict=True):
        if (d := median_diameter(lab)) > 0:
            by_group.setdefault(group, []).append(d)
    if not by_group:
        return 0.0
    medians = [float(np.median(v)) for v in by_group.values()]
    most = LIMITS[1] * min(medians)  # inference cannot enlarge the smallest objects further
    return round(min(max(*medians, cfg.train.min_object_diameter), most), 1)


def model_card(cfg: PipelineConfig, channels: list[str], diameter: float = 0.0) -> ModelCard:
    """The card of a network trained with `cfg` on `channels` at object `diameter` px."""
    target = cfg.data.target
    return ModelCard(
        encoder=cfg.train.encoder,
        in_channels=len(channels) * views(cfg.preprocess.normalisation),
        outputs=list(OUTPUTS if cfg.train.contact_map else OUTPUTS[:2]),  # [:2]: no contact
        channels=list(channels),
        target=target,
        channel=method_channel(cfg.data.layout, target, cfg.baseline.channel, channels),
        low_percentile=cfg.preprocess.low_percentile,
        high_percentile=cfg.preprocess.high_percentile,
        normalisation=cfg.preprocess.normalisation,
        postprocess=cfg.postprocess,
        decoder_channels=list(cfg.train.decoder_channels),
        architecture=cfg.train.architecture,
        diameter=diameter,
    )


def _identity(cfg: PipelineConfig, run: RunDir, dataset_id: str) -> dict:
    """What a checkpoint must match to be resumed: run, dataset, and every setting that
    shapes training (not the number of epochs, which a resume may extend, nor the patience:
    both only decide when it stops)."""
    settings = {k: v for k, v in cfg.to_dict().items() if k in ("data", "preprocess", "train")}
    settings["train"] = {
        k: v for k, v in settings["train"].items() if k not in ("epochs", "patience")
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return {"run_id": run.run_id, "dataset_id": dataset_id, "config": digest}


def _resume(run: RunDir, identity: dict, model: torch.nn.Module) -> TrainState:
    """The state to continue from (a fresh one when there is no checkpoint)."""
    remove_temporaries(run.checkpoint, dead_only=False)  # left by a killed save
    if not run.checkpoint.is_file():
        return TrainState()
    try:
        ckpt = torch.load(run.checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign file: say which, never unpickle code
        raise DataError(
            f"{run.checkpoint}: unreadable training checkpoint ({type(exc).__name__}); delete "
            "it to train from scratch"
        ) from exc
    if ckpt.get("identity") != identity:
        raise DataError(
            f"{run.checkpoint} belongs to another training ({ckpt.get('identity')}, this one is "
            f"{identity}); use a new --run-id, or delete {run.train} to train again here"
        )
    model.load_state_dict(ckpt["model"])
    state = TrainState(**{**ckpt["state"], "history": []})
    state.history = [EpochResult(**e) for e in ckpt["state"]["history"]]
    state.optimizer, state.scheduler = ckpt["optimizer"], ckpt["scheduler"]
    state.ema = ckpt.get("ema")
    log.info("resuming %s after epoch %d (%s)", run.run_id, state.epoch + 1, run.checkpoint)
    return state


def _save_epoch(
    run: RunDir,
    model: torch.nn.Module,
    scored: torch.nn.Module,
    card: ModelCard,
    identity: dict,
    state: TrainState,
    improved: bool,
) -> None:
    """Write the checkpoint (and, when the epoch improved, the model folder: the `scored`
    network, the weights' moving average or `model` itself) atomically; non-finite weights
    stop the run before anything is written."""
    networks = (model,) if scored is model else (model, scored)  # each checked once
    tensors = [v for net in networks for v in net.state_dict().values()]
    if not all(torch.isfinite(v).all() for v in tensors if v.is_floating_point()):
        raise DataError(
            f"training produced non-finite weights at epoch {state.epoch + 1}; nothing was "
            "saved: lower train.lr or check the training images"
        )
    payload = {k: getattr(state, k) for k in ("epoch", "best_score", "epochs_since_best")}
    payload["history"] = [dataclasses.asdict(e) for e in state.history]
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": state.optimizer,
        "scheduler": state.scheduler,
        "ema": state.ema,
        "state": payload,
        "identity": identity,
        "card": card.to_dict(),
    }
    full = f"{run.train}: disk full while saving the training checkpoint; free space and re-run"
    with disk_full_is_data_error(full):
        if improved:
            save_model(scored, card, run.model)
        with atomic_path(run.checkpoint) as tmp:
            torch.save(checkpoint, tmp)


def _splits(prepared_uri: str, target: str) -> dict[str, tuple[list, list, list]]:
    """(images, label images, groups) of the train and val fields with `target` labels."""
    out = {}
    for split in ("train", "val"):
        samples = [x for x in load_split(prepared_uri, split) if target in x.labels]
        out[split] = (
            [x.image for x in samples],
            [x.labels[target] for x in samples],
            [x.group for x in samples],
        )
    if not out["train"][0] or not out["val"][0]:
        raise DataError(
            f"need labelled '{target}' fields in train and val, got {len(out['train'][0])} and "
            f"{len(out['val'][0])}; check data.target and the dataset's labels"
        )
    return out


def _result(
    run: RunDir, state: TrainState, resumed_from: int, device, seconds: float
) -> TrainResult:
    best = state.best
    if best is None:
        raise DataError(f"{run.train}: no epoch finished; raise train.epochs")
    total = sum(e.seconds for e in state.history)
    wait = sum(e.data_wait * e.seconds for e in state.history) / max(total, 1e-9)
    log.info(
        "best epoch %d: val fg IoU %.4f, F1 %.4f (%.0f%% of the time waiting for data)",
        best.epoch + 1,
        best.val_fg_iou,
        best.val_f1,
        100 * wait,
    )
    return TrainResult(
        str(run.model),
        model_id(run.model),
        str(run.checkpoint),
        best.epoch,
        best.val_fg_iou,
        best.val_f1,
        len(state.history),
        resumed_from,
        wait,
        str(device),
        seconds,
    )


def train(
    prepared_uri: str,
    cfg: PipelineConfig,
    run: RunDir,
    channels: list[str],
    dataset_id: str = "unknown",
) -> TrainResult:
    """Train a U-Net on the train split, select on val, keep the best epoch as the run's model
    folder; resumes a killed training of the same run, dataset and settings."""
    t = cfg.train
    data = _splits(prepared_uri, cfg.data.target)
    diameter = training_diameter(cfg, *data["train"][1:])
    device, card = resolve_device(t.device), model_card(cfg, channels, diameter)
    torch.manual_seed(t.seed)  # the same initial weights for the same seed
    model = build_model(**card.arch, encoder_weights=t.encoder_weights).to(device)
    identity = _identity(cfg, run, dataset_id)
    state = _resume(run, identity, model)
    resumed_from, start = state.epoch + 1, time.perf_counter()
    log.info(
        "training %s U-Net on %s: %d train / %d val fields, objects at %.1f px, epochs %d-%d "
        "of %d steps",
        t.encoder,
        device,
        len(data["train"][0]),
        len(data["val"][0]),
        diameter,
        resumed_from + 1,
        t.epochs,
        t.steps_per_epoch,
    )
    with track(cfg, str(run.root), name=f"train-{run.run_id}", job_type="train") as tracker:

        def on_epoch(result: EpochResult, state: TrainState, scored: torch.nn.Module) -> None:
            keys = ("train_loss", "val_fg_iou", "val_f1", "val_map", "data_wait")
            tracker.log({f"train/{k}": getattr(result, k) for k in keys}, step=result.epoch)
            _save_epoch(run, model, scored, card, identity, state, result.improved)

        unlabelled_edge = not cfg.data.edge_objects_labelled
        state = train_seg(
            model,
            data["train"],
            data["val"][:2],
            t,
            device,
            card,
            on_epoch=on_epoch,
            state=state,
            unlabelled_edge=unlabelled_edge,
        )
        if cfg.postprocess.tune_seed_threshold and "distance" in card.outputs:
            best, best_card = load_model(run.model, device)
            policy = edge_policy(unlabelled_edge)
            best_card = tune_seed_threshold(best, data["val"][:2], device, best_card, policy)
            save_model(best, best_card, run.model)  # same weights (same id), tuned card
        out = _result(run, state, resumed_from, device, time.perf_counter() - start)
        out.wandb_run = tracker.ref
        tracker.summary({f"best_{k}": getattr(out, k) for k in ("val_fg_iou", "val_f1")})
    return out
