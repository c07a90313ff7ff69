"""The network: a segmentation-models-pytorch U-Net, and the device it runs on."""

from __future__ import annotations

import logging

import torch

from pipeline.config.params import SUGGESTED_ENCODERS
from pipeline.errors import ConfigError

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` (a CUDA GPU when present), ``cpu`` or ``cuda`` (which must be visible)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA GPU is visible; use train.device=auto")
    return torch.device(name)


def build_model(
    encoder: str,
    in_channels: int,
    classes: int,
    encoder_weights: str | None = None,
    decoder_channels: list[int] | tuple[int, ...] = (128, 64, 32, 16, 16),
) -> torch.nn.Module:
    """An smp U-Net taking (B, in_channels, H, W) float32 (H, W multiples of 32) and returning
    (B, classes, H, W) logits; an unknown encoder raises ConfigError listing valid names.
    The decoder is lighter than smp's default (256, 128, 64, 32, 16): a third less work per
    pixel, which sets the pace on a CPU at full field size."""
    import segmentation_models_pytorch as smp

    names = smp.encoders.get_encoder_names()
    if encoder not in names:
        common = [n for n in SUGGESTED_ENCODERS if n in names]
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
            decoder_channels=tuple(decoder_channels),
        )
    except KeyError as exc:
        raise ConfigError(f"train.encoder={encoder!r}: {exc}") from None


def for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """`model` in eval mode with each BatchNorm folded into the convolution before it (torch.fx
    `fuse`): the same outputs up to float rounding, in about three quarters of the CPU time
    (benchmarks/predict_speed.py). A new module for inference only: its state dict has other
    keys, so save the original. A network fx cannot trace is returned unfolded."""
    from torch.fx.experimental.optimization import fuse

    model.eval()
    try:
        return fuse(model)
    except Exception as exc:  # noqa: BLE001 - any tracing failure: run it as it is
        log.info(
            "BatchNorm not folded (%s: %s); running the network as it is", type(exc).__name__, exc
        )
        return model
