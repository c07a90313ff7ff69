"""A new field's CPU work before the network, without torch: its pixels as (C, H, W) with the
model card's channels, the view its objects' size is measured on, and that size
(`pipeline.segment.scale`). `segment_folder`'s post-processing workers run these; as nothing
here imports torch, a worker starts without it (importing torch was over half of a worker's
start: about 3.3 of 6 s on a 2-core machine).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline.colour import channels_last, colour_intensity
from pipeline.errors import DataError
from pipeline.preprocess.samples import measures_on_percentiles, normalise
from pipeline.segment.card import ModelCard
from pipeline.segment.scale import image_diameter

log = logging.getLogger(__name__)


def as_chw(raw: np.ndarray, path: Path, card: ModelCard, channel: int = -1) -> np.ndarray:
    """A new image as (C, H, W) with the card's channels: accepts (H, W) for one channel,
    (H, W, C) when C matches, and a colour image, (H, W, 3) or (H, W, 4), for one channel as its
    intensity (`pipeline.colour.colour_intensity`: the largest of R, G and B). `channel` >= 0 (for
    a one-channel model) takes that channel of a multi-channel (C, H, W) or (H, W, C) image
    instead (colour: 0 red, 1 green, 2 blue), e.g. the nuclei of a composite."""
    n_in = len(card.channels)
    if channel >= 0:
        raw = one_channel(raw, path, channel, n_in)
    elif n_in == 1:
        raw = colour_intensity(raw, path)
    raw = raw[None] if raw.ndim == 2 else raw
    if raw.ndim == 3 and raw.shape[0] != n_in and raw.shape[-1] == n_in:
        raw = np.moveaxis(raw, -1, 0)  # (H, W, C) -> (C, H, W)
    if raw.ndim != 3 or raw.shape[0] != n_in:
        pick = (
            "; pick one with --channel K (predict.channel), or, for a stack of time points or "
            "z slices, save one image per plane (Fiji: Image > Stacks > Stack to Images)"
            if n_in == 1
            else ""
        )
        raise DataError(
            f"{path}: shape {raw.shape}, model expects {n_in} channel(s) "
            f"({', '.join(card.channels)}) as (C, H, W) or (H, W, C){pick}"
        )
    return raw


def one_channel(raw: np.ndarray, path: Path, channel: int, n_in: int) -> np.ndarray:
    """Channel `channel` of `raw`, (C, H, W) or (H, W, C) (the smaller axis holds the channels;
    an (H, W) image has only channel 0), as (H, W); DataError naming the file otherwise."""
    if n_in != 1:
        raise DataError(
            f"{path}: predict.channel={channel} picks one channel for a one-channel model; this "
            f"model reads {n_in} ({', '.join(map(str, range(n_in)))}): leave predict.channel -1"
        )
    planes = np.moveaxis(raw, -1, 0) if channels_last(raw) else raw[None] if raw.ndim == 2 else raw
    count = len(planes) if planes.ndim == 3 else 0
    if channel >= count:
        raise DataError(
            f"{path}: shape {raw.shape} has {count} channel(s), predict.channel={channel} asks "
            f"for one it lacks; use 0..{max(count - 1, 0)} or -1 (the image as it is)"
        )
    return planes[channel]


def card_input(raw: np.ndarray, card: ModelCard) -> np.ndarray:
    """A field's (C, H, W) raw intensities as the network reads them: float32, normalised as
    the card says (its percentiles and `normalisation`)."""
    return normalise(raw, card.low_percentile, card.high_percentile, card.normalisation)


def measure_view(
    image: np.ndarray, card: ModelCard, raw: np.ndarray | None = None
) -> np.ndarray | None:
    """The (C, H, W) view of a field its objects' size is measured on: a percentile
    normalisation, the `image`'s own (None), or for another normalisation, one of `raw`, the
    (C, H, W) intensities (a rank-normalised image spreads the background over half the range,
    and its Otsu threshold finds one field-wide object)."""
    if measures_on_percentiles(card.normalisation):
        return None
    if raw is None:
        log.warning("object size measured on a %s-normalised image", card.normalisation)
        return None
    return normalise(raw, card.low_percentile, card.high_percentile)


def image_objects(image: np.ndarray, card: ModelCard, raw: np.ndarray | None = None) -> float:
    """The diameter (px) of the objects of a new (C, H, W) normalised `image`, measured without
    the network as `card_maps` does (its `objects`; 0.0: nothing found or none needed, then
    `card_maps` decides)."""
    if card.diameter <= 0:
        return 0.0
    view = measure_view(image, card, raw)
    return image_diameter((image if view is None else view)[card.channel_index], card.diameter)
