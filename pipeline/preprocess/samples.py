"""Samples: one field's normalised image, raw image and label images, read from a dataset
version or from a prepared folder (written by `pipeline.preprocess.prepare`).

A prepared folder::

    index.json              [{field_id, split, group, file}], the split of every field
    source.json             {dataset_id, channels, target}: what it was prepared from (since
                            2026-12-07; `prepared_dataset_id`)
    <split>/<safe_id>.npz   image  (C, H, W) float32 in [0, 1] after normalisation (`normalise`)
                            raw    (C, H, W) original intensities (classical methods use these)
                            cells / nuclei  (H, W) int32 instance labels, 0 = background
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.conventions import LABEL_SETS, safe_name
from pipeline.errors import DataError
from pipeline.io import read_tif
from pipeline.jsonio import read_json, write_json
from pipeline.preprocess.flat_regions import clip_flat_regions
from pipeline.preprocess.hot_pixels import remove_hot_pixels

INDEX = "index.json"
SOURCE = "source.json"
# what `normalise` does to each (H, W) channel first, in order: each returns the channel itself
# when it has nothing to change (flat, tiny, boolean channels included)
CLEANERS = (clip_flat_regions, remove_hot_pixels)
# the fix for a damaged prepared folder: it is derived data, made again from the dataset version
_REDO = "delete the prepared folder and re-run `cellseg preprocess` (the dataset is untouched)"


@dataclass
class Sample:
    field_id: str
    split: str
    image: np.ndarray  # (C, H, W) float32 normalised
    raw: np.ndarray  # (C, H, W) raw intensities
    labels: dict[str, np.ndarray]  # (H, W) int32 instance labels
    group: str = ""  # stratum of the field (a sequence, a condition): training draws evenly


def _percentile(ch: np.ndarray, low: float, high: float) -> np.ndarray:
    """The channel's `low` percentile to 0, its `high` percentile to 1, clipped. Integer
    channels (8- and 16-bit microscopy) are counted and looked up (`_counted_percentile`): the
    same numbers in about a third of the time."""
    if _countable(ch):
        return _counted_percentile(ch, low, high)
    ch = ch.astype(np.float32)
    lo, hi = np.percentile(ch, [low, high])
    return _stretch(ch, lo, hi)


def _stretch(values: np.ndarray, lo: np.float64, hi: np.float64) -> np.ndarray:
    """`values` (float32) with `lo` to 0 and `hi` to 1, clipped (computed in float64)."""
    return np.clip((values - lo) / max(hi - lo, 1e-6), 0, 1)


def _countable(ch: np.ndarray) -> bool:
    """Whether the channel is integer with fewer than 2**20 distinct possible values (8- and
    16-bit ones without looking)."""
    if ch.dtype.kind not in "ui" or not ch.size:
        return False
    return ch.dtype.itemsize <= 2 or int(ch.max()) - int(ch.min()) < 1 << 20


def _intensity_index(ch: np.ndarray) -> tuple[int, np.ndarray]:
    """A countable channel's pixels as flat bins (`start`, `index`): pixel intensity = start +
    index, 8- and 16-bit unsigned intensities as they are, others shifted by the minimum."""
    if ch.dtype.kind == "u" and ch.dtype.itemsize <= 2:
        return 0, ch.ravel()
    start = int(ch.min())
    return start, ch.ravel().astype(np.int64) - start


def _intensity_counts(ch: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """A countable channel's (`start`, `index`, `counts`): its pixels as flat bins
    (`_intensity_index`) and how many pixels each bin holds. 8- and 16-bit unsigned channels of
    fewer than 2**24 pixels are counted by OpenCV's histogram (float32 counts, exact there),
    in a third to a half of np.bincount's time on a 1024x1024 field; others by np.bincount."""
    start, index = _intensity_index(ch)
    if index.dtype in (np.uint8, np.uint16) and index.size < 1 << 24:
        bins = int(index.max()) + 1
        row = index.reshape(1, -1)  # the flat bins again, as one image row: no second copy
        counts = cv2.calcHist([row], [0], None, [bins], [0, bins]).ravel().astype(np.int64)
        return start, index, counts
    return start, index, np.bincount(index)


def _counted_percentile(ch: np.ndarray, low: float, high: float) -> np.ndarray:
    """`_percentile` of an integer channel from its histogram: NumPy's linear percentile
    (`np.percentile`'s arithmetic on the two order statistics around each rank) and a lookup
    table of the stretched value of every intensity, so that each pixel costs one lookup."""
    start, index, counts = _intensity_counts(ch)
    cumulative = np.cumsum(counts)
    rank = (ch.size - 1) * np.true_divide([low, high], 100)  # np.percentile's virtual index
    below = np.minimum(np.floor(rank), ch.size - 1)
    above = np.minimum(below + 1, ch.size - 1)
    order = np.searchsorted(cumulative, np.stack([below, above]), side="right")
    a, b = (order + start).astype(np.float32)  # the order statistics, as np.percentile sees them
    gamma = rank - below
    diff = b - a
    lo, hi = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
    values = np.arange(start, start + counts.size).astype(np.float32)  # as the pixels cast
    lut = _stretch(values, lo, hi).astype(np.float32)
    return np.take(lut, index).reshape(ch.shape)  # np.take: half the time of lut[index]


def _rank(ch: np.ndarray, low: float, high: float) -> np.ndarray:
    """Each pixel's mid-rank among the channel's pixels, in (0, 1): any increasing lookup of
    the intensities (gain, offset, a display gamma) gives the same image, ties apart. The
    percentiles are not used."""
    if _countable(ch):  # counting: O(pixels)
        _, index, counts = _intensity_counts(ch)
    else:
        _, index, counts = np.unique(ch.astype(np.float32), return_inverse=True, return_counts=True)
    mid = (np.cumsum(counts) - counts / 2) / ch.size
    return np.take(mid, index).reshape(ch.shape)


# config.preprocess.normalisation: the views of each channel, stacked view by view
NORMALISERS = {
    "percentile": (_percentile,),
    "rank": (_rank,),
    "percentile_rank": (_percentile, _rank),
}


def views(method: str) -> int:
    """How many normalised channels `method` makes of each image channel."""
    if method not in NORMALISERS:
        raise ValueError(f"unknown normalisation {method!r}; valid: {', '.join(NORMALISERS)}")
    return len(NORMALISERS[method])


def measures_on_percentiles(method: str) -> bool:
    """Whether `method`'s first view of a channel is its percentile normalisation (object
    sizes are measured on that view: `pipeline.segment.inference.card_maps`)."""
    return NORMALISERS[method][0] is _percentile


def normalise(image: np.ndarray, low: float, high: float, method: str = "percentile") -> np.ndarray:
    """Per-channel normalisation of a (C, H, W) image to float32 in [0, 1] (`NORMALISERS`):
    ``percentile`` maps the `low`..`high` percentiles to 0..1; ``rank`` maps each pixel to its
    rank, so that a display lookup applied before export does not change what the network sees;
    ``percentile_rank`` gives both, (2C, H, W): the C percentile channels, then the C rank
    channels (the first C channels are always a percentile view when there is one). Flat regions
    at the extremes are clipped (`flat_regions.clip_flat_regions`: padding, scale bars) and hot
    pixels removed (`hot_pixels.remove_hot_pixels`) first."""
    if image.ndim != 3:
        raise ValueError(f"normalise expects (C, H, W), got shape {image.shape}")
    n = views(method)
    c_in = image.shape[0]
    out = np.empty((n * c_in, *image.shape[1:]), np.float32)
    channels = list(image)
    for clean in CLEANERS:
        channels = [clean(ch) for ch in channels]
    for v, view in enumerate(NORMALISERS[method]):
        for c, ch in enumerate(channels):
            out[v * c_in + c] = view(ch, low, high)
    return out


def channel_indices(meta: dict, channels: list[str]) -> list[int]:
    """Indices of `channels` (empty = all) in a dataset version's channels; unknown ones raise."""
    channels = channels or meta["channels"]
    unknown = [c for c in channels if c not in meta["channels"]]
    if unknown:
        raise DataError(
            f"data.channels {unknown} not in dataset {meta['dataset_id']} "
            f"(channels: {', '.join(meta['channels'])}); fix data.channels"
        )
    return [meta["channels"].index(c) for c in channels]


def read_field(
    root: Path, row, idx: list[int], low: float, high: float, method: str = "percentile"
) -> Sample:
    """One manifest row of a dataset version as a Sample (see the module docstring for arrays).

    A field without an image (ground truth only) gets (0, H, W) `image` and `raw` arrays.
    """
    labels = {
        key: read_tif(root / getattr(row, f"{key}_path")).astype(np.int32)
        for key in LABEL_SETS
        if getattr(row, f"{key}_path")
    }
    if row.image_path and row.n_channels:
        raw = read_tif(root / row.image_path)
        raw = (raw[None] if raw.ndim == 2 else raw)[idx]
        image = normalise(raw, low, high, method)
    else:
        raw = image = np.zeros((0, int(row.height), int(row.width)), np.float32)
    return Sample(row.field_id, row.split, image, raw, labels, str(getattr(row, "group", "")))


def write_samples(
    folder: Path, samples: Iterable[Sample], source: dict | None = None
) -> dict[str, int]:
    """Write `samples` (one at a time: memory stays bounded) as a prepared folder (see the
    module docstring), with `source` ({dataset_id, channels, target}) as its SOURCE where
    given; returns the number of fields per split."""
    index, counts = [], {}
    for s in samples:
        rel = f"{s.split}/{safe_name(s.field_id)}.npz"
        (folder / s.split).mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / rel, image=s.image, raw=s.raw, **s.labels)
        index.append({"field_id": s.field_id, "split": s.split, "group": s.group, "file": rel})
        counts[s.split] = counts.get(s.split, 0) + 1
    write_json(folder / INDEX, index)
    if source is not None:
        write_json(folder / SOURCE, source)
    return counts


def prepared_dataset_id(folder: str | Path, default: str = "unknown") -> str:
    """The id of the dataset version the prepared `folder` was made from (its SOURCE), or
    `default` for a folder written before the SOURCE was (or by hand); a SOURCE that is there
    but unreadable raises DataError."""
    path = Path(folder) / SOURCE
    if not path.is_file():
        return default
    source = read_json(path, "prepared folder's source", _REDO)
    if not isinstance(source, dict) or not isinstance(source.get("dataset_id"), str):
        raise DataError(f"{path}: no dataset_id in {source!r:.80}; {_REDO}")
    return source["dataset_id"]


def is_prepared(folder: str | Path) -> bool:
    return (Path(folder) / INDEX).is_file()


def load_split(prepared_uri: str | Path, split: str) -> list[Sample]:
    """Load every sample of one split ("train", "val", "test" or "unlabelled")."""
    root = Path(prepared_uri)
    if not is_prepared(root):
        raise DataError(f"{root}: no {INDEX}; run `cellseg preprocess` first")
    samples = []
    for entry in read_json(root / INDEX, "prepared folder's index", _REDO):
        if entry["split"] != split:
            continue
        path = root / entry["file"]
        try:
            with np.load(path) as z:
                labels = {k: z[k] for k in LABEL_SETS if k in z}
                image, raw = z["image"], z["raw"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(
                f"{path}: unreadable sample ({type(exc).__name__}: {exc}); {_REDO}"
            ) from exc
        samples.append(Sample(entry["field_id"], split, image, raw, labels, entry.get("group", "")))
    return samples
