"""Inference: load a trained network with its model card and apply it to whole images.

``predict_foreground`` returns an (H, W) float32 foreground probability; ``predict_labels``
turns it into an (H, W) int32 instance label image (0 = background) as the card says;
``predict_folder`` runs a trained or registered model (a model folder,
`pipeline.segment.artifact`) on a folder of new TIF images.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import DataError
from pipeline.io import read_tif, write_labels
from pipeline.preprocess.samples import normalise
from pipeline.segment.artifact import load_model
from pipeline.segment.card import ModelCard
from pipeline.segment.network import resolve_device
from pipeline.segment.postprocess import foreground, to_instances

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_foreground(
    model: torch.nn.Module, image: np.ndarray, device: torch.device
) -> np.ndarray:
    """(C, H, W) float32 normalised image -> (H, W) float32 foreground probability."""
    if image.ndim != 3:
        raise ValueError(f"expected a (C, H, W) image, got shape {image.shape}")
    _, h, w = image.shape
    ph, pw = -h % 32, -w % 32  # U-Net needs sides divisible by 32
    x = torch.from_numpy(np.pad(image, ((0, 0), (0, ph), (0, pw)), mode="reflect"))[None]
    was_training = model.training
    model.eval()
    prob = torch.sigmoid(model(x.to(device)))[0, 0, :h, :w].float().cpu().numpy()
    model.train(was_training)
    return prob


def predict_labels(
    model: torch.nn.Module,
    image: np.ndarray,
    device: torch.device,
    card: ModelCard,
    instances: str | None = None,
) -> np.ndarray:
    """(C, H, W) normalised image -> (H, W) int32 instance labels, split as `instances` says
    (default: the card's ``postprocess.instances``)."""
    fg = foreground(predict_foreground(model, image, device), card.postprocess)
    return to_instances(fg, image, card, instances)


def _as_chw(raw: np.ndarray, path: Path, card: ModelCard) -> np.ndarray:
    """A new image as (C, H, W) with the card's channels: accepts (H, W) for one channel and
    (H, W, C) when C matches."""
    n_in = card.in_channels
    raw = raw[None] if raw.ndim == 2 else raw
    if raw.ndim == 3 and raw.shape[0] != n_in and raw.shape[-1] == n_in:
        raw = np.moveaxis(raw, -1, 0)  # (H, W, C) -> (C, H, W)
    if raw.ndim != 3 or raw.shape[0] != n_in:
        raise DataError(
            f"{path}: shape {raw.shape}, model expects {n_in} channel(s) "
            f"({', '.join(card.channels)}) as (C, H, W) or (H, W, C)"
        )
    return raw


def predict_folder(model_uri: str, images: str, out_dir: str) -> list[str]:
    """Segment every ``*.tif`` in `images` (each (H, W) or (C, H, W), C = model channels).

    Writes ``<out_dir>/<stem>_labels.tif`` (uint16 instance labels, uint32 past 65535 objects)
    and returns their paths.
    """
    device = resolve_device("auto")
    model, card = load_model(model_uri, device)
    if not Path(images).is_dir():
        raise DataError(f"{images}: folder does not exist; pass --images a folder of .tif files")
    paths = sorted(p for p in Path(images).glob("*") if p.suffix.lower() in (".tif", ".tiff"))
    if not paths:
        raise DataError(f"{images}: no .tif images to segment")
    written = []
    for path in paths:
        raw = _as_chw(read_tif(path), path, card)
        image = normalise(raw, card.low_percentile, card.high_percentile)  # as in training
        labels = predict_labels(model, image, device, card)
        written.append(str(write_labels(Path(out_dir) / f"{path.stem}_labels.tif", labels)))
        log.info("%s: %d objects", path.name, labels.max())
    return written
