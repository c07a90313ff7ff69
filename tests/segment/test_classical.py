"""Classical methods: one shared test over every registry entry, then method-specific checks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.draw import disk

from pipeline.config import WatershedConfig
from pipeline.ingest.dataset import ingest
from pipeline.io import read_tif
from pipeline.preprocess.prepare import preprocess
from pipeline.rundir import RunDir
from pipeline.segment.baseline import run_baselines
from pipeline.segment.classical import (
    METHODS,
    REFERENCE_METHODS,
    MethodInput,
    get_method,
    segment,
    to_uint8,
)

SHAPE = (48, 64)
LEFT, RIGHT = (24, 22), (24, 41)  # disc centres, radius 10: the two discs touch


def two_discs(radius: float, value: float = 200.0, noise: float = 5.0, seed: int = 0) -> np.ndarray:
    """(H, W) float image: two touching bright discs on a dark, noisy background."""
    rng = np.random.default_rng(seed)
    img = np.full(SHAPE, 20.0)
    for centre in (LEFT, RIGHT):
        img[disk(centre, radius, shape=SHAPE)] = value
    return np.clip(img + rng.normal(0, noise, SHAPE), 0, 255)


def cells_input(dtype=np.uint8, **params) -> MethodInput:
    raw = np.stack([two_discs(10), two_discs(4, seed=1)]).astype(dtype)
    return MethodInput(raw, ["c1", "c5"], "c1", "cells", WatershedConfig(**params))


def nuclei_input(dtype=np.uint8, **params) -> MethodInput:
    raw = two_discs(10)[None]
    if dtype == np.uint16:  # like CTC HeLa: a high offset, a narrow range
        raw = raw * 10 + 33000
    return MethodInput(raw.astype(dtype), ["fluo"], "fluo", "nuclei", WatershedConfig(**params))


# --- every registry entry -----


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("make", [cells_input, nuclei_input], ids=["cells", "nuclei"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_every_method_returns_instance_labels(name, make, dtype):
    x = make(dtype)
    labels = segment(name, x)
    assert labels.shape == SHAPE and labels.dtype == np.int32
    ids = np.unique(labels)
    assert ids[0] == 0 and labels.min() == 0
    np.testing.assert_array_equal(ids, np.arange(len(ids)))  # 1..N without gaps
    assert 1 <= len(ids) - 1
    if name != "adaptive_gaussian":  # a local threshold marks background noise too
        assert labels[0:3, 0:3].max() == 0  # dark corner is background
        assert labels[LEFT] > 0 and labels[RIGHT] > 0  # both disc centres are foreground


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_handles_a_blank_image(name):
    x = MethodInput(np.zeros((2, *SHAPE), np.uint8), ["c1", "c5"], "c1", "cells")
    labels = segment(name, x)
    assert labels.shape == SHAPE and labels.dtype == np.int32


# --- reference methods: exactly the notebook's OpenCV calls -----


def test_reference_methods_equal_direct_opencv_calls():
    rng = np.random.default_rng(3)
    c1 = cv2.GaussianBlur(rng.integers(0, 256, SHAPE, dtype=np.uint8), (7, 7), 0)
    x = MethodInput(np.stack([c1, c1[::-1]]), ["c1", "c5"], "c1", "cells")
    expected = {
        "threshold55": cv2.threshold(c1, 55, 255, cv2.THRESH_BINARY)[1],
        "otsu": cv2.threshold(c1, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1],
        "gaussian_otsu": cv2.threshold(
            cv2.GaussianBlur(c1, (5, 5), 0), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU
        )[1],
        "adaptive_gaussian": cv2.adaptiveThreshold(
            c1, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY, 15, 2
        ),
    }
    assert set(expected) == set(REFERENCE_METHODS)
    for name, mask in expected.items():
        np.testing.assert_array_equal(get_method(name)(x), mask, err_msg=name)
        np.testing.assert_array_equal(segment(name, x) > 0, mask > 0, err_msg=name)


def test_gaussian_otsu_is_not_plain_otsu():
    # The notebook ran plain Otsu twice; on a noisy image the blurred version must differ.
    x = MethodInput(two_discs(10, noise=60)[None].astype(np.uint8), ["fluo"], "fluo", "nuclei")
    assert not np.array_equal(get_method("otsu")(x), get_method("gaussian_otsu")(x))


def test_to_uint8_scales_min_max():
    out = to_uint8(np.array([[33000, 34000], [35000, 37000]], np.uint16))
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255


# --- the watershed method -----


def test_watershed_splits_touching_nuclei_by_distance_peaks():
    x = nuclei_input()
    labels = segment("watershed", x)
    assert labels.max() == 2
    assert labels[LEFT] != labels[RIGHT]
    assert segment("otsu", x).max() == 1  # connected components merge them


def test_watershed_uses_nuclei_as_cell_markers():
    labels = segment("watershed", cells_input())
    assert labels.max() == 2 and labels[LEFT] != labels[RIGHT]
    # One marker only (the right nucleus removed): the two cells become one object.
    x = cells_input()
    x.raw[1, :, 32:] = 20
    assert segment("watershed", x).max() == 1


def test_watershed_parameters_come_from_the_config():
    x = nuclei_input(min_object_size=2000)  # larger than both discs: nothing is left
    assert segment("watershed", x).max() == 0
    with pytest.raises(ValueError, match="threshold='bogus'"):
        segment("watershed", nuclei_input(threshold="bogus"))


# --- inputs and the stage -----


def test_bad_inputs_raise_with_the_values():
    with pytest.raises(ValueError, match=r"got shape \(48, 64\)"):
        MethodInput(np.zeros(SHAPE), ["c1"], "c1", "cells")
    with pytest.raises(ValueError, match="'c9' is not among"):
        MethodInput(np.zeros((1, *SHAPE)), ["c1"], "c9", "cells")
    with pytest.raises(ValueError, match="unknown baseline method 'nope'; valid methods: "):
        get_method("nope")


def test_run_baselines_writes_every_default_method(tmp_path, tiny_cfg):
    assert tiny_cfg.baseline.methods == [*REFERENCE_METHODS, "watershed"]
    dataset = ingest(tiny_cfg)
    prepared = preprocess(dataset.uri, tiny_cfg, RunDir(tmp_path / "run").preprocess)
    start = time.perf_counter()
    out = run_baselines(prepared.uri, tiny_cfg, RunDir(tmp_path / "run"), prepared.channels)
    assert time.perf_counter() - start < 10
    assert list(out) == tiny_cfg.baseline.methods
    n_test = prepared.counts["test"]
    for name, folder in out.items():
        tifs = sorted(Path(folder).glob("*.tif"))
        assert len(tifs) == n_test, name
        assert read_tif(tifs[0]).dtype == np.uint16
        meta = json.loads((Path(folder) / "method.json").read_text())
        assert meta["channel"] == "c1" and meta["params"]["marker_channel"] == "c5"
