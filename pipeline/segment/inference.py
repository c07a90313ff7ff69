"""Inference: load a trained network with its model card and apply it to whole images.

``predict_maps`` returns the network's (K, H, W) float32 output probabilities (foreground, then
the normalised distance), tiled for large fields, with the image rescaled when its objects are
of another size than the network was trained on (`pipeline.segment.scale`);
``predict_labels`` turns them into an (H, W) int32 instance label image (0 = background) as the
card says;
``predict_folder`` runs a trained or registered model (a model folder,
`pipeline.segment.artifact`) on a folder of new TIF images.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pipeline.config import PostprocessConfig
from pipeline.segment.card import ModelCard
from pipeline.segment.fields import measure_view
from pipeline.segment.postprocess import foreground, to_instances
from pipeline.segment.scale import (
    foreground_diameter,
    image_diameter,
    rescale_factor,
    resize_tensor,
)

log = logging.getLogger(__name__)


def autocast(device: torch.device, precision: str, inference: bool = False):
    """bf16 autocast for ``bf16``, and for ``auto`` on a GPU (or, for `inference`, on a CPU
    with native bf16: `cpu_bf16`); otherwise full precision."""
    auto = device.type == "cuda" or (inference and device.type == "cpu" and cpu_bf16())
    bf16 = precision == "bf16" or (precision == "auto" and auto)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


@functools.cache
def cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX): there bf16 channels-last
    inference takes about half the time of fp32 (benchmarks/predict_speed.py)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and torch.backends.mkldnn.is_available()


def predict_maps(
    model: torch.nn.Module,
    image: np.ndarray,
    device: torch.device,
    post: PostprocessConfig | None = None,
    precision: str = "auto",
    batch: int = 4,
    diameter: float = 0.0,
    objects: float = 0.0,
    channel: int = 0,
    measure_on: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """(C, H, W) float32 normalised image -> (K, H, W) float32 output probabilities, written
    into `out` when given (see `network_maps`).

    `diameter` is the object diameter the network was trained at (the card's; 0: no
    rescaling). `objects` is the diameter of this image's objects when known (validation
    fields: from their labels); otherwise they are measured on the `channel` (the target's:
    `scale.image_diameter`) of `measure_on`, a (C, H, W) image of the same field (default:
    `image`; see `card_maps`), or, when that finds nothing, on a first pass's foreground.
    When their size differs from `diameter` by more than `scale.TOLERANCE`, the image is
    resized so they match, run, and the maps resized back to (H, W).
    """
    post = post or PostprocessConfig()
    maps = None
    if image.ndim == 3 and diameter > 0 and not objects:
        objects = image_diameter((image if measure_on is None else measure_on)[channel])
        if not objects:
            maps = network_maps(model, image, device, post, precision, batch)
            objects = foreground_diameter(foreground(maps[0], post))
    size = network_size(image.shape[1:], objects, diameter)
    if size is not None:
        log.debug("objects of %.1f px, trained at %.1f: seen at %s", objects, diameter, size)
        return network_maps(model, image, device, post, precision, batch, size, out)
    if maps is None:
        return network_maps(model, image, device, post, precision, batch, out=out)
    return maps if out is None else written(torch.from_numpy(maps), out)


def network_size(shape: tuple[int, ...], objects: float, diameter: float) -> tuple[int, int] | None:
    """The (h, w) the network sees a field of (H, W) `shape` at when its objects are `objects`
    px across and the network was trained at `diameter` px (`scale.rescale_factor`; either 0:
    unknown); None: as it is."""
    factor = rescale_factor(objects, diameter)
    if factor == 1.0:
        return None
    h, w = shape
    return max(32, round(h * factor)), max(32, round(w * factor))


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

    Images of up to one tile's area (``post.tile_size`` squared) run whole, padded to a
    multiple of 32 (cheapest: no overlap); larger ones as overlapping tiles, `batch` at a time,
    blended with Gaussian weights (MONAI's sliding-window inference), so memory stays bounded
    for any field size.
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
    net = flip_averaged(model) if post.flip_tta else model
    with cast:
        if h * w <= post.tile_size**2:
            ph, pw = -h % 32, -w % 32  # U-Net sides are multiples of 32
            mode = "reflect" if ph < h and pw < w else "constant"
            logits = net(torch.nn.functional.pad(x, (0, pw, 0, ph), mode=mode))[..., :h, :w]
        else:
            from monai.inferers import sliding_window_inference

            logits = sliding_window_inference(
                x,
                roi_size=(post.tile_size, post.tile_size),
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


def card_maps(
    model: torch.nn.Module,
    image: np.ndarray,
    device: torch.device,
    card: ModelCard,
    precision: str = "auto",
    objects: float = 0.0,
    raw: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """`predict_maps` as the model card says: its post-processing, training object diameter and
    target channel; `objects` and `out` as in `predict_maps`, unknown sizes measured on
    `fields.measure_view`."""
    measured = card.diameter > 0 and not objects
    return predict_maps(
        model,
        image,
        device,
        card.postprocess,
        precision,
        diameter=card.diameter,
        objects=objects,
        channel=card.channel_index,
        measure_on=measure_view(image, card, raw) if measured else None,
        out=out,
    )


def batch_key(shape: tuple[int, ...], card: ModelCard, objects: float) -> tuple | None:
    """What (C, H, W) fields must share to go through the network in one batch
    (`card_maps_batch`): their `shape` and the size the network sees them at, from their
    objects' diameter `objects` (px); None for a field whose objects are still to be measured
    (`card_maps` does that, on it alone)."""
    if card.diameter > 0 and not objects:
        return None
    return tuple(shape), network_size(shape[1:], objects, card.diameter)


def card_maps_batch(
    model: torch.nn.Module,
    images: list[np.ndarray],
    device: torch.device,
    card: ModelCard,
    objects: list[float],
    precision: str = "auto",
    outs: list[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """`card_maps` of N (C, H, W) normalised fields with one `batch_key` (their objects'
    diameters `objects`, px), as one batch through the network (`network_batch`): the same
    maps, to float rounding, as one field at a time (`segment_folder` on a GPU)."""
    keys = {batch_key(im.shape, card, o) for im, o in zip(images, objects, strict=True)}
    if len(keys) != 1 or None in keys:
        raise ValueError(
            f"card_maps_batch needs fields of one shape, seen at one size, with their objects "
            f"measured; got (shape, size) {sorted(map(str, keys))}: run them with card_maps"
        )
    size = keys.pop()[1]
    post = card.postprocess
    return network_batch(model, images, device, post, precision, size=size, outs=outs)


def predict_labels(
    model: torch.nn.Module,
    image: np.ndarray,
    device: torch.device,
    card: ModelCard,
    instances: str | None = None,
    objects: float = 0.0,
    raw: np.ndarray | None = None,
) -> np.ndarray:
    """(C, H, W) normalised image -> (H, W) int32 instance labels, split as `instances` says
    (default: the card's ``postprocess.instances``); `objects`: the objects' diameter in px
    when known (0: measured, see `card_maps`, which takes `raw`)."""
    maps = card_maps(model, image, device, card, objects=objects, raw=raw)
    return to_instances(maps, image, card, instances)


def predict_folder(
    model_uri: str,
    images: str,
    out_dir: str,
    pixel_size_um: float | None = None,
    object_diameter: float = 0.0,
    workers: int = -1,
    flip_tta: bool | None = None,
    min_relative_intensity: float | None = None,
    compile: bool = False,
    images_per_step: int = 0,
) -> list[str]:
    """Segment every ``*.tif`` in `images` (each (H, W) or (C, H, W), C = model channels) into
    `out_dir`: labels, overlays and measurements (`pipeline.segment.batch`); returns the paths
    of the ``<stem>_labels.tif`` written. `object_diameter` as in `predict_labels`; `workers`:
    post-processing processes, `flip_tta` and `min_relative_intensity` (None: the card's),
    `compile` and `images_per_step` as in `segment_folder`."""
    from pipeline.segment.batch import segment_folder

    return segment_folder(
        model_uri,
        images,
        out_dir,
        pixel_size_um,
        object_diameter,
        workers=workers,
        flip_tta=flip_tta,
        min_relative_intensity=min_relative_intensity,
        compile=compile,
        images_per_step=images_per_step,
    ).segmented
