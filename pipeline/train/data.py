"""Training batches prepared off the main thread: an endless stream of augmented crops with
their targets, read by a torch DataLoader with worker processes.

Fields are drawn group by group (a CTC sequence, a BBBC020 condition), so every dataset and
condition weighs the same however many fields it has (or as `group_weights` says). With a
`diameter`, each field is zoomed so its objects have that diameter (`pipeline.segment.scale`)
before the random zoom of the augmentation: the network learns one object size, and inference
rescales to it. Each epoch's stream is seeded by (seed, epoch, worker), so a resumed training
draws the same crops it would have drawn.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline.config.training import AugmentConfig
from pipeline.errors import ConfigError
from pipeline.segment.scale import median_diameter
from pipeline.train.augment import build_transform, random_crop
from pipeline.train.targets import contact_band, mark_unlabelled_edge, target_maps

EDGE_BAND = 1.5  # unlabelled pixels this many object diameters from the edge are ignored


class CropStream(IterableDataset):
    """Yields (image (C, crop, crop) float32, targets (3, crop, crop) float32) forever.

    `unlabelled_edge`: the labels skip objects touching the image edge, so unlabelled pixels
    within EDGE_BAND object diameters of a field's edge are ignored by the loss.
    `contact_weight`: the extra loss weight between touching objects (`target_maps`).
    `group_weights`: {name: weight} (`group_probabilities`); a group weighs 1 by default."""

    def __init__(
        self,
        images: list[np.ndarray],
        labels: list[np.ndarray],
        groups: list[str],
        crop: int,
        aug: AugmentConfig,
        seed: int,
        diameter: float = 0.0,
        unlabelled_edge: bool = False,
        contact_weight: float = 0.0,
        group_weights: dict[str, float] | None = None,
    ) -> None:
        if not images or len(images) != len(labels) or len(images) != len(groups):
            raise ValueError(
                f"need as many images, label images and groups, got {len(images)}, "
                f"{len(labels)}, {len(groups)} (and at least one)"
            )
        self.images, self.crop, self.aug, self.seed = images, crop, aug, seed
        self.contact_weight = contact_weight
        by_group: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            by_group.setdefault(g, []).append(i)
        self.groups = list(by_group.values())
        # None: uniform, drawn as before group weights existed (the same crops for a seed)
        self.group_p = group_probabilities(list(by_group), group_weights) if group_weights else None
        sizes = [median_diameter(y) for y in labels] if diameter > 0 or unlabelled_edge else []
        self.zooms = [diameter / d if d > 0 and diameter > 0 else 1.0 for d in sizes] or [
            1.0
        ] * len(images)
        self.labels = labels
        if unlabelled_edge:
            self.labels = [
                mark_unlabelled_edge(y, EDGE_BAND * d) for y, d in zip(labels, sizes, strict=True)
            ]
        # where objects touch, per field, for crops drawn around contacts (aug.contact_crops)
        self.contacts = [
            np.argwhere(contact_band(y)) if aug.enabled and aug.contact_crops else None
            for y in self.labels
        ]
        self.epoch = 0
        # Build the pipeline once here: its libraries are imported before workers fork (an
        # import inside a forked worker trips W&B's import hooks).
        build_transform(aug, crop)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, self.epoch, worker])
        transform = build_transform(self.aug, self.crop, seed=int(rng.integers(2**31)))
        while True:
            n = len(self.groups)
            members = self.groups[
                rng.integers(n) if self.group_p is None else rng.choice(n, p=self.group_p)
            ]
            i = members[rng.integers(len(members))]
            image, labels = random_crop(
                self.images[i],
                self.labels[i],
                self.crop,
                self.aug,
                rng,
                transform,
                self.zooms[i],
                self.contacts[i],
            )
            yield (
                torch.from_numpy(image),
                torch.from_numpy(target_maps(labels, self.contact_weight)),
            )


def group_probabilities(groups: list[str], weights: dict[str, float]) -> np.ndarray:
    """How often each of `groups` is drawn: the weight of the longest name in `weights` that is
    the group's name or the start of it (1 where none is), normalised. ConfigError for a name
    that matches no group, or weights that leave nothing to draw."""
    unknown = sorted(n for n in weights if not any(g.startswith(n) for g in groups))
    if unknown:
        raise ConfigError(
            f"train.group_weights names {', '.join(unknown)}, which start no training group's "
            f"name; the groups are {', '.join(sorted(groups))}"
        )

    def weight(group: str) -> float:
        names = [n for n in weights if group.startswith(n)]
        return weights[max(names, key=len)] if names else 1.0

    w = np.array([weight(g) for g in groups], float)
    if not w.sum() > 0:
        raise ConfigError(
            f"train.group_weights {weights} leave no group to draw from; give one a weight > 0"
        )
    return w / w.sum()


def default_workers(requested: int) -> int:
    """`requested` data loader processes; -1: one per CPU core but one (the training loop's)."""
    return max(0, (os.cpu_count() or 1) - 1) if requested < 0 else requested


def batches(
    stream: CropStream, batch_size: int, workers: int, epoch: int, pin: bool
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An iterator of (B, C, crop, crop) images and (B, 4, crop, crop) targets for `epoch`."""
    stream.epoch = epoch
    loader = DataLoader(
        stream,
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=4 if workers else None,
    )
    return iter(loader)
