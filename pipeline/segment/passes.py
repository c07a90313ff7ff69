"""The network's passes over fields: (N, C, H, W) batches of normalised images to (N, K, H,
W) output probabilities, in bf16 autocast where that pays (`autocast`), channels-last, whole
or as overlapping, blended tiles, each mirrored out at its edges (`padded`), with flip
test-time averaging when the post-processing asks for it, resized on the device when the
objects are of another size than the network was trained at. `pipeline.segment.inference`
decides sizes and batches from the model card; this module only runs the network.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pipeline.config import PostprocessConfig
from pipeline.segment.scale import resize_tensor

EDGE_MARGIN = 8  # px of mirrored image the network sees beyond each edge of a field or tile
SIDE_MULTIPLE = 32  # the U-Net's sides: five halvings


def autocast(device: torch.device, precision: str, inference: bool = False):
    """bf16 autocast for ``bf16``, and for ``auto`` on a GPU (or, for `inference`, on a CPU
    with native bf16: `cpu_bf16`); otherwise full precision."""
    auto = device.type == "cuda" or (inference and device.type == "cpu" and cpu_bf16())
    bf16 = precision == "bf16" or (precision == "auto" and auto)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


@functools.cache
def cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX) and oneDNN may use it:
    there bf16 channels-last inference takes about half the time of fp32, or less
    (benchmarks/predict_speed.py). oneDNN held to AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``) would
    emulate bf16 at about 8x fp32's time: fp32 then."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    if not (native and torch.backends.mkldnn.is_available()):
        return False
    try:  # False where ONEDNN_MAX_CPU_ISA holds oneDNN below AVX-512
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


def network_maps(
    model: torch.nn.Module,
    image: np.ndarray,
    device: torch.device,
    post: PostprocessConfig,
    precision: str = "auto",
    batch: int = 4,
    size: tuple[int, int] | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """(C, H, W) float32 normalised image -> (K, H, W) float32 output probabilities: one
    image's `network_batch`, written into `out` when given."""
    if image.ndim != 3:
        raise ValueError(f"expected a (C, H, W) image, got shape {image.shape}")
    outs = None if out is None else [out]
    return network_batch(model, [image], device, post, precision, batch, size, outs)[0]


@torch.no_grad()
def network_batch(
    model: torch.nn.Module,
    images: list[np.ndarray],
    device: torch.device,
    post: PostprocessConfig,
    precision: str = "auto",
    batch: int = 4,
    size: tuple[int, int] | None = None,
    outs: list[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """N (C, H, W) float32 normalised images of one shape -> N (K, H, W) float32 output
    probabilities, from one batch through the network (on a GPU one transfer and one launch,
    or replay, for all N: `card_maps_batch`). With `size`, the network sees the images
    resized to that (h, w) and the maps are resized back (`scale.resize_tensor`), both on
    `device`: a GPU machine's CPU is left to the workers. With `outs`, N (K, H, W) float32
    arrays (handoff slots: `handoff.Slots.array`), each image's maps are copied from the device
    straight into its own and they are returned: no new host array, no copy.

    Images of up to one tile's area (``post.tile_size`` squared) run whole, mirrored out to
    a multiple of 32 (cheapest: no overlap); larger ones as overlapping tiles (`tile_sides`),
    `batch` at a time, blended with Gaussian weights (MONAI's sliding-window inference), so
    memory stays bounded for any field size.
    """
    shapes = {im.shape for im in images}
    if not images or len(shapes) > 1 or len(next(iter(shapes))) != 3:
        raise ValueError(f"expected (C, H, W) images of one shape, got shapes {sorted(shapes)}")
    if outs is not None and len(outs) != len(images):
        raise ValueError(f"{len(images)} images but {len(outs)} arrays to write their maps into")
    was_training = model.training
    cast = autocast(device, precision, inference=True)
    # channels-last (NHWC) suits both cuDNN and oneDNN; the model is put back as it was. Each
    # change walks every module (1.8 ms for a resnet34 U-Net), so only what differs is changed
    was_nhwc = is_channels_last(model)
    if was_training:
        model.eval()
    if not was_nhwc:
        model.to(memory_format=torch.channels_last)
    arrays = [torch.from_numpy(np.ascontiguousarray(im, dtype=np.float32)) for im in images]
    x = (arrays[0][None] if len(arrays) == 1 else torch.stack(arrays)).to(device)
    x = (x if size is None else resize_tensor(x, size)).contiguous(
        memory_format=torch.channels_last
    )
    h, w = x.shape[-2:]
    net = padded(flip_averaged(model) if post.flip_tta else model)
    with cast:
        if h * w <= post.tile_size**2:
            logits = net(x)
        else:
            from monai.inferers import sliding_window_inference

            logits = sliding_window_inference(
                x,
                roi_size=tile_sides((h, w), post.tile_size, post.tile_overlap),
                sw_batch_size=batch,
                predictor=net,
                overlap=post.tile_overlap,
                mode="gaussian",
                sw_device=device,
                device=torch.device("cpu"),  # the whole field is accumulated in host memory
            )
    if was_training:
        model.train()
    if not was_nhwc:
        model.to(memory_format=torch.contiguous_format)
    maps = torch.sigmoid(logits.float())
    maps = maps if size is None else resize_tensor(maps, images[0].shape[1:])
    if outs is None:
        return list(maps.cpu().numpy())
    return [written(m, out) for m, out in zip(maps, outs, strict=True)]


def padded(net: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """`net` on (N, C, H, W) inputs of any H and W: mirrored at every edge by at least
    EDGE_MARGIN px and up to a multiple of 32 (U-Net sides; zeros where a side is too short to
    mirror), its output cropped back to (H, W). Where the network met an edge as its own zero
    padding, it drew the nuclei cut by that edge fainter there (padded at the bottom and right
    only, a GOWT1 nucleus cut by the left edge: foreground 0.35 in the edge column, 0.87 three
    px in), so their outlines stopped a px short of it."""

    def run(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        (top, bottom), (left, right) = edge_pads(h), edge_pads(w)
        mode = "reflect" if max(top, bottom) < h and max(left, right) < w else "constant"
        out = net(torch.nn.functional.pad(x, (left, right, top, bottom), mode=mode))
        return out[..., top : top + h, left : left + w]

    return run


def edge_pads(side: int) -> tuple[int, int]:
    """(before, after) px to pad a `side`-px side with: EDGE_MARGIN or more each, their sum
    taking the side to a multiple of 32 (a 707-px side 14 and 15, a 1024-px one 16 and 16)."""
    total = 2 * EDGE_MARGIN + -(side + 2 * EDGE_MARGIN) % SIDE_MULTIPLE
    return total // 2, total - total // 2


def tile_sides(shape: tuple[int, int], tile: int, overlap: float) -> tuple[int, int]:
    """The (h, w) of the tiles a field of (H, W) `shape` is cut into: along each side as many
    tiles as `tile`-px ones overlapping by `overlap` need (MONAI's placement: the last tile
    ends at the side's end), each the shortest for which that many still cover the side and
    which `padded` takes to a multiple of 32 with EDGE_MARGIN px at each edge (16 px short of
    one), or the whole side where one tile covers it. With `tile`-px tiles, a field a little
    over one tile would be cut into two that overlap by most of their area (a HeLa frame
    enlarged to 1302 x 2046, in 1536-px tiles: 4.7 Mpx through the network for 2.7); balanced,
    3.1 Mpx. Tiles a multiple of 32 themselves would each run 32 px longer (a x2.7 HeLa frame's
    1088 x 1216 as 1120 x 1248); these cost as much or up to 7% less (1104 x 1200 as 1120 x
    1216)."""

    # the shortest side `padded` takes to a multiple with no more than the margins, and its steps
    first = -2 * EDGE_MARGIN % SIDE_MULTIPLE or SIDE_MULTIPLE

    def count(side: int, size: int) -> int:  # tiles of `size` < `side` along it
        step = max(1, int(size * (1 - overlap)))
        return math.ceil((side - size) / step) + 1

    def balanced(side: int) -> int:
        if side <= tile:
            return side
        need = count(side, tile)
        sides = range(first, tile, SIDE_MULTIPLE)
        return next((s for s in sides if count(side, s) <= need), tile)

    return balanced(shape[0]), balanced(shape[1])


def written(maps: torch.Tensor, out: np.ndarray) -> np.ndarray:
    """`out`, a (K, H, W) float32 array, with the (K, H, W) float32 `maps` copied into it from
    their device; a ValueError naming both when they do not match (no silent broadcast)."""
    if out.shape != tuple(maps.shape) or out.dtype != np.float32:
        want = tuple(maps.shape)
        raise ValueError(f"out is {out.dtype} {out.shape}; the maps are float32 {want}")
    torch.from_numpy(out).copy_(maps)
    return out


def is_channels_last(model: torch.nn.Module) -> bool:
    """Whether `model`'s convolution weights are channels-last, judged on the first with more
    than one input channel and a kernel of more than one px (the others are both layouts at
    once); True when it has none."""
    weight = next(
        (p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1 and p[0, 0].numel() > 1),
        None,
    )
    return weight is None or weight.is_contiguous(memory_format=torch.channels_last)


def flip_averaged(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """`model` as a function of an (N, C, H, W) batch that returns the mean of its logits over
    the batch and its horizontal, vertical and double flips (flip test-time augmentation)."""
    flips = ((), (-1,), (-2,), (-2, -1))

    def run(x: torch.Tensor) -> torch.Tensor:
        total = model(x)
        for dims in flips[1:]:
            total = total + torch.flip(model(torch.flip(x, dims)), dims)
        return total / len(flips)

    return run
