"""The network: a segmentation-models-pytorch U-Net (with a full-resolution skip by default),
and the device it runs on."""

from __future__ import annotations

import copy
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


class FullResUnet(torch.nn.Module):
    """An smp U-Net whose last decoder block also takes the input image as a skip connection.

    smp's U-Net drops the full-resolution skip: its outlines come from features at half
    resolution upsampled by repeating pixels, and the network has to learn where inside each
    2x2 block an edge lies. A trained one placed outlines 0.2-0.45 px off in a fixed direction
    (flip test-time averaging cancelled it). Here the last block's convolutions see the image
    itself: the offset fell under 0.1 px and the median IoU of matched HeLa nuclei rose from
    0.93 to 0.94 (README, "The network"). (B, C, H, W) in,
    (B, classes, H, W) logits out, H and W multiples of 32; state-dict keys as smp's U-Net.
    """

    def __init__(self, unet: torch.nn.Module, in_channels: int) -> None:
        super().__init__()
        from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoderBlock

        self.encoder, self.decoder = unet.encoder, unet.decoder
        self.segmentation_head = unet.segmentation_head
        last = self.decoder.blocks[-1]
        self.decoder.blocks[-1] = UnetDecoderBlock(
            last.conv1[0].in_channels, in_channels, last.conv2[0].out_channels
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)[1:][::-1]  # deepest first; [0] is the input (or a stub)
        out = self.decoder.center(features[0])
        for block, skip in zip(self.decoder.blocks, [*features[1:], x], strict=True):
            out = self.step(block, out, skip)
        return self.segmentation_head(out)

    @staticmethod
    def step(block: torch.nn.Module, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """One decoder block on `x` and its `skip` (`decoder_step`)."""
        return decoder_step(block, x, skip)


def decoder_step(block: torch.nn.Module, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """smp's `UnetDecoderBlock` (no attention) on (B, C, h, w) `x` and its (B, S, H, W) `skip`,
    without building their (B, C + S, H, W) concatenation: the first convolution of a
    concatenation is the sum of convolutions of its parts (same weights, same result to float
    rounding); without the copy the network took less CPU time on a 1056x1408 field in four
    runs of five (benchmarks/decoder_speed.py, docs/experiments.md)."""
    x = torch.nn.functional.interpolate(x, size=skip.shape[2:], mode=block.interpolation_mode)
    conv, *rest = block.conv1  # convolution, then BatchNorm (or Identity once folded) and ReLU
    n = x.shape[1]
    y = torch.nn.functional.conv2d(x, conv.weight[:, :n], conv.bias, padding=conv.padding)
    y = y + torch.nn.functional.conv2d(skip, conv.weight[:, n:], None, padding=conv.padding)
    for layer in rest:
        y = layer(y)
    return block.conv2(y)


# name -> what it is; `build_model` makes each
ARCHITECTURES = {
    "unet": "smp's U-Net (outlines from half-resolution features; models trained before 12/2026)",
    "unet_fullres": "smp's U-Net with the input image as a full-resolution skip (FullResUnet)",
}


def build_model(
    encoder: str,
    in_channels: int,
    classes: int,
    encoder_weights: str | None = None,
    decoder_channels: list[int] | tuple[int, ...] = (128, 64, 32, 16, 16),
    architecture: str = "unet_fullres",
) -> torch.nn.Module:
    """A U-Net (`ARCHITECTURES`) taking (B, in_channels, H, W) float32 (H, W multiples of 32)
    and returning (B, classes, H, W) logits; an unknown encoder or architecture raises
    ConfigError listing valid names. The decoder is lighter than smp's default (256, 128, 64,
    32, 16): a third less work per pixel, which sets the pace on a CPU at full field size."""
    import segmentation_models_pytorch as smp

    if architecture not in ARCHITECTURES:
        raise ConfigError(
            f"train.architecture={architecture!r} is not one of {', '.join(ARCHITECTURES)}"
        )
    names = smp.encoders.get_encoder_names()
    if encoder not in names:
        common = [n for n in SUGGESTED_ENCODERS if n in names]
        raise ConfigError(
            f"train.encoder={encoder!r} is not an smp encoder; e.g. {', '.join(common)} "
            f"({len(names)} in smp.encoders.get_encoder_names())"
        )
    try:
        unet = smp.Unet(
            encoder_name=encoder,
            encoder_weights=encoder_weights,
            in_channels=in_channels,
            classes=classes,
            decoder_channels=tuple(decoder_channels),
        )
    except KeyError as exc:
        raise ConfigError(f"train.encoder={encoder!r}: {exc}") from None
    return FullResUnet(unet, in_channels) if architecture == "unet_fullres" else unet


def for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` in eval mode with each BatchNorm folded into the convolution before it
    (inside `nn.Sequential` by hand, elsewhere with torch.fx `fuse`), channels-last as
    `passes.network_maps` runs it: the same outputs up to float rounding, in about three
    quarters of the CPU time (benchmarks/predict_speed.py). For
    inference only: its state dict has other keys, so save the original. Where fx cannot trace
    the network, only the folds by hand are made."""
    from torch.fx.experimental.optimization import fuse
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model.eval())
    for seq in model.modules():  # convolutions that `decoder_step` calls as functions
        if isinstance(seq, torch.nn.Sequential):
            layers = list(seq)
            for i, (conv, norm) in enumerate(zip(layers[:-1], layers[1:], strict=True)):
                if isinstance(conv, torch.nn.Conv2d) and isinstance(norm, torch.nn.BatchNorm2d):
                    seq[i], seq[i + 1] = fuse_conv_bn_eval(conv, norm), torch.nn.Identity()
    try:
        model = fuse(model, inplace=True)
    except Exception as exc:  # noqa: BLE001 - any tracing failure: run it as folded so far
        log.info(
            "fx cannot trace the network (%s: %s): BatchNorm folded inside nn.Sequential only",
            type(exc).__name__,
            exc,
        )
    return model.to(memory_format=torch.channels_last)
