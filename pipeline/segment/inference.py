"""Inference: load a trained network with its model card and apply it to whole images.

``predict_maps`` returns the network's (K, H, W) float32 output probabilities (foreground, then
the normalised distance), tiled for large fields, with the image rescaled when its objects are
of another size than the network was trained on (`pipeline.segment.scale`; the passes
themselves: `pipeline.segment.passes`); ``card_maps_batch`` runs several fields of one size as
one batch;
``predict_labels`` turns them into an (H, W) int32 instance label image (0 = background) as the
card says;
``predict_folder`` runs a trained or registered model (a model folder,
`pipeline.segment.artifact`) on a folder of new TIF images.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from pipeline.config import PostprocessConfig
from pipeline.segment.card import ModelCard
from pipeline.segment.fields import measure_view
from pipeline.segment.passes import network_batch, network_maps, written
from pipeline.segment.postprocess import foreground, to_instances
from pipeline.segment.scale import foreground_diameter, image_diameter, rescale_factor

log = logging.getLogger(__name__)


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
        objects = image_diameter((image if measure_on is None else measure_on)[channel], diameter)
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
    **options: Any,
) -> list[str]:
    """Segment every image in `images` (a folder of `pipeline.io.IMAGE_SUFFIXES`, or one; each
    (H, W) or (C, H, W), C = model channels, or colour) into `out_dir`: labels, overlays and
    measurements (`pipeline.segment.batch.segment_folder`, which takes `options`: workers,
    flip_tta, min_relative_intensity, min_field_contrast, compile, images_per_step, channel;
    `batch.folder_options` gives them from a config); returns the paths of the
    ``<stem>_labels.tif`` written. `object_diameter` as in `predict_labels`."""
    from pipeline.segment.batch import segment_folder

    return segment_folder(
        model_uri, images, out_dir, pixel_size_um, object_diameter, **options
    ).segmented
