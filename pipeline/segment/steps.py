"""How `pipeline.segment.batch.segment_folder`'s network process takes its images: prepared by
workers in order, then grouped into steps of up to ``predict.images_per_step`` consecutive
images of one size, which go through the network as one batch (on a GPU one transfer and one
launch or CUDA-graph replay for all: `pipeline.segment.inference.card_maps_batch`)."""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.segment.card import ModelCard
from pipeline.segment.handoff import Parcel, load


@dataclass
class Prepared:
    """An image `prepare_image` made ready for the network (its fields, in order)."""

    path: Path
    digest: str
    raw: Parcel
    image: Parcel
    objects: float
    size: float | None

    @functools.cached_property
    def array(self) -> np.ndarray:
        """The (C, H, W) normalised image, read from its parcel when first asked for."""
        return load(self.image)


def prepared(paths: list[Path], submit: Callable[[Path], Future], workers: int) -> Iterator:
    """`Prepared` images of `paths`, in order, as `submit` (`batch.prepare_image` in a worker)
    returns them: one more submitted ahead than there are `workers`, so each has one to do."""
    todo, ready = deque(paths), deque()
    while todo or ready:
        while todo and len(ready) <= workers:
            ready.append(submit(todo.popleft()))
        yield Prepared(*ready.popleft().result())


def step_key(p: Prepared, card: ModelCard, per_step: int) -> tuple | None:
    """What images share to go through the network together (`inference.batch_key`); None,
    alone, when steps take one image, or for a field large enough to be tiled (its tiles are
    batched already)."""
    from pipeline.segment.inference import batch_key

    if per_step <= 1:
        return None
    key = batch_key(p.array.shape, card, p.objects)
    if key is None:
        return None
    h, w = key[1] or p.array.shape[1:]
    return key if h * w <= card.postprocess.tile_size**2 else None


def steps(items: Iterator, per_step: int, key: Callable) -> Iterator[list]:
    """Consecutive `items` in lists of at most `per_step` of one `key(item)`; an item whose key
    is None goes alone. A list is complete when full or when the next item differs, so the
    network's process waits for the images to fill a step (the read-ahead keeps them coming)."""
    group: list = []
    last = None
    for item in items:
        k = key(item)
        if group and (k is None or k != last):
            yield group
            group = []
        group.append(item)
        last = k
        if k is None or len(group) >= per_step:
            yield group
            group = []
    if group:
        yield group


def default_images_per_step(device) -> int:
    """Images per network step for `segment_folder`: on a GPU 8 (on an H200 a resnet34 U-Net's
    step on one 1024x1024 field took 6-8 ms, replayed as a CUDA graph, where the network alone
    took 2 ms a field in bf16 batches of 32: one field leaves it idle; 8 not yet measured end
    to end); on a CPU 1, as one field already fills every core (two took as long per field)."""
    return 8 if device.type == "cuda" else 1
