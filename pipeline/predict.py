"""Model building, loading and inference: the U-Net applied to whole images.

``predict_foreground`` returns an (H, W) float32 foreground probability; ``predict_labels``
turns it into an (H, W) int32 instance label image (connected components, 0 = background).
``predict_folder`` runs a registered or trained model on a folder of new TIF images.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from skimage.measure import label as connected_components
from skimage.morphology import remove_small_objects

from pipeline.config import BaselineConfig, ConfigError
from pipeline.io import DataError, read_tif, write_labels
from pipeline.layouts import method_channel
from pipeline.preprocess import normalise
from pipeline.watershed import split_foreground

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA GPU is visible; use train.device=auto")
    return torch.device(name)


def build_model(encoder: str, in_channels: int, classes: int, encoder_weights: str | None = None):
    """An smp U-Net; an unknown encoder raises ConfigError listing valid names."""
    import segmentation_models_pytorch as smp

    names = smp.encoders.get_encoder_names()
    if encoder not in names:
        common = [
            n
            for n in (
                "resnet18",
                "resnet34",
                "resnet50",
                "efficientnet-b0",
                "mobilenet_v2",
                "tu-convnext_tiny",
            )
            if n in names
        ]
        raise ConfigError(
            f"train.encoder={encoder!r} is not an smp encoder; e.g. {', '.join(common)} "
            f"({len(names)} in smp.encoders.get_encoder_names())"
        )
    try:
        return smp.Unet(
            encoder_name=encoder,
            encoder_weights=encoder_weights,
            in_channels=in_channels,
            classes=classes,
        )
    except KeyError as exc:
        raise ConfigError(f"train.encoder={encoder!r}: {exc}") from None


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


def foreground_mask(model, image: np.ndarray, device, ckpt: dict) -> np.ndarray:
    """(C, H, W) normalised image -> (H, W) bool foreground: probability > the checkpoint's
    threshold, specks smaller than ``baseline.min_object_size`` removed."""
    fg = predict_foreground(model, image, device) > ckpt["threshold"]
    min_size = ckpt["config"]["baseline"]["min_object_size"]
    return remove_small_objects(fg, max_size=min_size - 1)


def to_instances(fg: np.ndarray, image: np.ndarray, ckpt: dict, method: str) -> np.ndarray:
    """Split an (H, W) bool foreground into (H, W) int32 instance labels (0 = background).

    ``components``: connected components (the model alone). ``watershed``: the baseline's
    markers (nuclei of the image for cells, distance-transform peaks for nuclei) split touching
    objects; markers come from the image, so this is model + classical post-processing.
    """
    if method == "components":
        return connected_components(fg).astype(np.int32)
    if method != "watershed":
        raise ValueError(f"unknown instance method {method!r}; use components or watershed")
    cfg = ckpt["config"]
    baseline = BaselineConfig(**cfg["baseline"])
    channels = ckpt["channels"]
    channel = method_channel(cfg["data"]["layout"], ckpt["target"], baseline.channel, channels)
    return split_foreground(fg, image, channels, channel, ckpt["target"], baseline)


def predict_labels(
    model, image: np.ndarray, device, ckpt: dict, instances: str | None = None
) -> np.ndarray:
    """(C, H, W) normalised image -> (H, W) int32 instance labels, split as `instances` says
    (default: the checkpoint's ``train.instances``)."""
    method = instances or ckpt["config"]["train"].get("instances", "components")
    return to_instances(foreground_mask(model, image, device, ckpt), image, ckpt, method)


def load_model(checkpoint: str | Path, device: torch.device | None = None):
    """Load a checkpoint written by the train stage; returns (model, checkpoint dict)."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise DataError(f"{path}: no model checkpoint; train or fetch a registered model first")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = build_model(**ckpt["arch"])
    model.load_state_dict(ckpt["model"])
    device = device or resolve_device("auto")
    return model.to(device).eval(), ckpt


def predict_folder(model_uri: str, images: str, out_dir: str) -> list[str]:
    """Segment every ``*.tif`` in `images` (each (H, W) or (C, H, W), C = model channels).

    Writes ``<out_dir>/<stem>_labels.tif`` (uint16 instance labels, uint32 past 65535 objects)
    and returns their paths.
    """
    device = resolve_device("auto")
    model, ckpt = load_model(model_uri, device)
    n_in = ckpt["arch"]["in_channels"]
    prep = ckpt["config"]["preprocess"]  # normalise exactly as in training
    if not Path(images).is_dir():
        raise DataError(f"{images}: folder does not exist; pass --images a folder of .tif files")
    paths = sorted(p for p in Path(images).glob("*") if p.suffix.lower() in (".tif", ".tiff"))
    if not paths:
        raise DataError(f"{images}: no .tif images to segment")
    written = []
    for path in paths:
        raw = read_tif(path)
        raw = raw[None] if raw.ndim == 2 else raw
        if raw.ndim == 3 and raw.shape[0] != n_in and raw.shape[-1] == n_in:
            raw = np.moveaxis(raw, -1, 0)  # (H, W, C) -> (C, H, W)
        if raw.ndim != 3 or raw.shape[0] != n_in:
            raise DataError(
                f"{path}: shape {raw.shape}, model expects {n_in} channel(s) "
                f"({', '.join(ckpt['channels'])}) as (C, H, W) or (H, W, C)"
            )
        labels = predict_labels(
            model,
            normalise(raw, prep["low_percentile"], prep["high_percentile"]),
            device,
            ckpt,
        )
        written.append(str(write_labels(Path(out_dir) / f"{path.stem}_labels.tif", labels)))
        log.info("%s: %d objects", path.name, labels.max())
    return written
