"""benchmarks/shifted_ctc.py records a field again as another microscope would: every shift
keeps the label image on the objects of the image it returns (within 0.3 px) and leaves the
input untouched."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk

from pipeline.evaluate.metrics import foreground_iou
from tests.conftest import REPO


def _benchmark():
    spec = importlib.util.spec_from_file_location("shifted", REPO / "benchmarks" / "shifted_ctc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SHIFTS = _benchmark().SHIFTS


def _field() -> tuple[np.ndarray, np.ndarray]:
    """(1, 120, 160) uint16 nuclei 20 px across over a camera offset, and their labels."""
    labels = np.zeros((120, 160), np.int32)
    for i, (r, c) in enumerate([(30, 30), (30, 90), (80, 60), (85, 130)], start=1):
        labels[disk((r, c), 10, shape=labels.shape)] = i
    raw = (1000 + 800 * (labels > 0)).astype(np.uint16)[None]
    return raw, labels


@pytest.mark.parametrize("name", list(SHIFTS))
def test_each_shift_keeps_the_labels_on_the_objects(name):
    raw, labels = _field()
    before = raw.copy(), labels.copy()
    image, truth = SHIFTS[name](raw, labels, np.random.default_rng(0))
    assert image.ndim == 3 and image.shape[1:] == truth.shape
    assert set(np.unique(truth)) == set(np.unique(labels))  # no nucleus lost, none made up
    channel = image[0].astype(np.float64)
    # halfway from the background to the dimmest nucleus (Otsu's threshold, with a tenth of
    # the nuclei four times brighter, would find those alone)
    dimmest = min(np.median(channel[truth == i]) for i in np.unique(truth[truth > 0]))
    found = channel > (np.median(channel[truth == 0]) + dimmest) / 2
    seen = truth > 0
    marks = (
        "a scale bar (0.3%)",
        "a scale bar and its label",
        "a time stamp",
        "debris (2 diameters, x10)",
    )
    if name in marks:  # marks, not objects:
        mark = channel > 2 * channel[seen].max()  # far brighter than any nucleus, compared
        rows, cols = np.nonzero(ndi.binary_dilation(mark, iterations=4))  # with their edges
        away = np.ones_like(mark)  # away from their box (hidden in the labels)
        if len(rows):  # debris finds no clear place in this small field
            away[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = False
        found, seen = found & away, seen & away
    assert foreground_iou(found, seen) > 0.85
    offset = np.argwhere(found).mean(axis=0) - np.argwhere(seen).mean(axis=0)
    assert np.abs(offset).max() < 0.3, f"labels {offset} px off the objects"
    assert np.array_equal(raw, before[0]) and np.array_equal(labels, before[1])


def test_debris_lands_clear_of_every_nucleus():
    raw, labels = _field()
    wide = np.pad(labels, ((0, 80), (0, 140)))  # room beside the nuclei
    field = np.pad(raw, ((0, 0), (0, 80), (0, 140)), constant_values=1000)
    image, truth = SHIFTS["debris (2 diameters, x10)"](field, wide, np.random.default_rng(0))
    blob = image[0] > 3000  # far brighter than the nuclei (1800)
    assert blob.sum() > np.pi * 18**2  # 2 nuclear diameters (20 px) across
    assert not (ndi.binary_dilation(blob, iterations=2) & (wide > 0)).any()
    assert np.array_equal(truth, wide)
