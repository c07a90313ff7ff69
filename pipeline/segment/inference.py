"""Inference: load a trained network with its model card and apply it to whole images.

``predict_maps`` returns the network's (K, H, W) float32 output probabilities (foreground, then
the normalised distance), tiled for large fields; ``predict_labels`` turns them into an (H, W)
int32 instance label image (0 = background) as the card says;
``predict_folder`` runs a trained or registered model (a model folder,
`pipeline.segment.artifact`) on a folder of new TIF images.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from pipeline.config import PostprocessConfig
from pipeline.errors import DataError
from pipeline.io import read_tif, write_labels
from pipeline.preprocess.samples import normalise
from pipeline.segment.artifact import load_model
from pipeline.segment.card import ModelCard
from pipeline.segment.network import resolve_device
from pipeline.segment.postprocess import to_instances

log = logging.getLogger(__name__)


def autocast(device: torch.device, precision: str):
    """bf16 autocast for ``bf16``, and for ``auto`` on a GPU; otherwise full precision."""
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


@torch.no_grad()
def predict_maps(
    model: torch.nn.Module,
    image: np.ndarray,
    device: torch.device,
    post: PostprocessConfig | None = None,
    precision: str = "auto",
    batch: int = 4,
) -> np.ndarray:
    """(C, H, W) float32 normalised image -> (K, H, W) float32 output probabilities.

    Images of up to one tile's area (``post.tile_size`` squared) run whole, padded to a
    multiple of 32 (cheapest: no overlap); larger ones as overlapping tiles, `batch` at a time,
    blended with Gaussian weights (MONAI's sliding-window inference), so memory stays bounded
    for any field size.
    """
    if image.ndim != 3:
        raise ValueError(f"expected a (C, H, W) image, got shape {image.shape}")
    post = post or PostprocessConfig()
    _, h, w = image.shape
    was_training = model.training
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].to(device)
    with autocast(device, precision):
        if h * w <= post.tile_size**2:
            ph, pw = -h % 32, -w % 32  # U-Net sides are multiples of 32
            mode = "reflect" if ph < h and pw < w else "constant"
            logits = model(torch.nn.functional.pad(x, (0, pw, 0, ph), mode=mode))[..., :h, :w]
        else:
            from monai.inferers import sliding_window_inference

            logits = sliding_window_inference(
                x,
                roi_size=(post.tile_size, post.tile_size),
                sw_batch_size=batch,
                predictor=model,
                overlap=post.tile_overlap,
                mode="gaussian",
                sw_device=device,
                device=torch.device("cpu"),  # the whole field is accumulated in host memory
            )
    model.train(was_training)
    return torch.sigmoid(logits.float())[0].cpu().numpy()


def predict_labels(
    model: torch.nn.Module,
    image: np.ndarray,
    device: torch.device,
    card: ModelCard,
    instances: str | None = None,
) -> np.ndarray:
    """(C, H, W) normalised image -> (H, W) int32 instance labels, split as `instances` says
    (default: the card's ``postprocess.instances``)."""
    maps = predict_maps(model, image, device, card.postprocess)
    return to_instances(maps, image, card, instances)


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
