"""Flat regions far outside the rest (padding, scale bars) are clipped before the
normalisation; real fields, saturated nuclei, black backgrounds and masks are not touched."""

import cv2
import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from pipeline.preprocess.flat_regions import clip_flat_regions
from pipeline.preprocess.samples import normalise


def _hela(shared_data, frame: str = "t089") -> np.ndarray:
    return tifffile.imread(shared_data / "ctc" / "Fluo-N2DL-HeLa" / "01" / f"{frame}.tif")


def _gowt1(shared_data) -> np.ndarray:
    return tifffile.imread(shared_data / "ctc" / "Fluo-N2DH-GOWT1" / "02" / "t005.tif")


def test_a_zeroed_band_no_longer_takes_the_normalisations_range(shared_data):
    # the real HeLa t089 (uint16, background near 33000) with its first tenth of rows zeroed,
    # as registration or stitching leaves it: the zeros were the 1st percentile and the
    # background sat near the top of the range; now they are the darkest background
    raw = _hela(shared_data)
    assert clip_flat_regions(raw) is raw  # a real frame: nothing to fill
    padded = raw.copy()
    padded[:70] = 0
    low, high = np.percentile(padded, [1, 99.8])
    assert low == 0 and np.median((padded[70:] - low) / (high - low)) > 0.8  # near the top
    out = clip_flat_regions(padded)
    assert out.dtype == padded.dtype and out is not padded
    assert np.array_equal(out[70:], raw[70:])  # only the padding changes
    fill = out[0, 0]
    assert (out[:70] == fill).all()
    assert np.percentile(raw, 0.5) <= fill <= np.percentile(raw, 5)  # the dark background
    clean = normalise(raw[None], 1.0, 99.8)[0]
    fixed = normalise(padded[None], 1.0, 99.8)[0]
    assert (fixed[:70] == 0).all()
    assert np.abs(fixed[70:] - clean[70:]).max() < 0.02  # the clean range, within 2%


@pytest.mark.parametrize(("height", "length"), [(12, 262), (5, 150)])
def test_a_scale_bar_becomes_the_background(shared_data, height, length):
    # the real GOWT1 t005 (uint8, its nuclei up to about 50) with a scale bar at 255: 12 px
    # high on 0.3% of the field, the bar was the 99.8th percentile and the nuclei sat in the
    # bottom fifth; 5 px high on 0.07% (0.12% with its label), not a flat region, the network drew
    # it as an object. Either is a filled rectangle at the maximum: a mark, the background now,
    # and so is its label above it (and a second bar, but not a 6 px blob 30 px from that)
    raw = _gowt1(shared_data)
    barred = raw.copy()
    bar = (slice(992 - height, 992), slice(962 - length, 962))
    barred[bar] = 255
    text = np.zeros(raw.shape, np.uint8)
    cv2.putText(
        text, "10 um", (962 - length, 992 - height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 1, 2
    )
    barred[text > 0] = 255
    if height == 12:  # a second bar, and a blob 30 px off it
        barred[1000:1010, 100:300] = barred[1012:1018, 330:336] = 255
    assert (barred == 255).mean() > 0.002 if height == 12 else (barred == 255).mean() < 0.002
    out = clip_flat_regions(barred)
    marks = (barred == 255) & (raw < 255)
    if height == 12:
        marks[1012:1018, 330:336] = False
        assert (out[1012:1018, 330:336] == np.percentile(barred[~marks], 99.8)).all()
    assert (out[marks] == np.percentile(raw, 1)).all()  # the darkest background
    outside = raw == barred
    assert np.array_equal(out[outside], raw[outside])  # only the marks and the blob change
    clean = normalise(raw[None], 1.0, 99.8)[0]
    fixed = normalise(barred[None], 1.0, 99.8)[0]
    assert (fixed[bar] == 0).all()
    assert np.abs(fixed - clean)[outside].max() < 0.05  # the clean range, within 5%


def test_an_anti_aliased_label_goes_with_its_edges(shared_data):
    # the label drawn anti-aliased over GOWT1 t005: its strokes' cores at 255, their edges
    # between the background and 255, most far above the nuclei (up to about 50); those next
    # to the cores become the background too, fainter ones and the rest stay as they were
    raw = _gowt1(shared_data)
    barred = raw.copy()
    barred[980:992, 700:962] = 255
    cover = np.zeros(raw.shape, np.uint8)
    cv2.putText(cover, "10 um", (700, 964), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 255, 2, cv2.LINE_AA)
    alpha = cover / 255.0
    barred[cover > 0] = np.round(raw * (1 - alpha) + 255 * alpha)[cover > 0]
    edges = (cover > 0) & (cover < 255)
    high = np.percentile(raw, 99.8)
    assert (barred[edges] > 2 * high).sum() > 100
    out = clip_flat_regions(barred)
    assert (out[cover > 0] <= high).all()  # no part of the label above the nuclei
    assert np.array_equal(out[barred == raw], raw[barred == raw])


@pytest.mark.parametrize("blur", [2.0, 1.5])
def test_bright_regions_with_blurred_edges_become_the_bright_end(shared_data, blur):
    # a disc 3x over the maximum, blurred by the optics and clipped at 255, on 0.3% of the
    # field: no mark and no glyph (blurred by 2 px, its ramp is bright 2-3 px out; by 1.5 px it
    # is not, but the plateau, 60 px across, is not drawn in strokes), but a flat region at the
    # maximum far above the rest: clipped to the bright end as before. The same bar as above
    # with a notch cut out of its corner is no rectangle, but its edges are sharp and it is
    # 12 px thick: a mark. Hot pixels in pairs (2 px) are too small for either
    raw = _gowt1(shared_data)
    rows, cols = np.indices(raw.shape)
    disc = ((rows - 900) ** 2 + (cols - 800) ** 2 < 30**2) * 765.0
    bright = np.minimum(np.maximum(raw, ndi.gaussian_filter(disc, blur)), 255).astype(np.uint8)
    top = bright == 255
    assert top.mean() > 0.002
    out = clip_flat_regions(bright)
    assert (out[top] == out[top][0]).all() and 40 <= out[top][0] <= 60  # the bright end
    barred = raw.copy()
    barred[980:992, 700:962] = 255
    barred[980:983, 700:704] = raw[980:983, 700:704]
    out = clip_flat_regions(barred)
    assert (out[barred == 255] == np.percentile(raw, 1)).all()  # the darkest background
    pairs = raw.copy()
    pairs[100:102, 100] = pairs[300, 300:302] = 255
    assert clip_flat_regions(pairs) is pairs


@pytest.mark.parametrize(
    ("text", "scale", "thickness"),
    [("00:05:00", 1.0, 2), ("A", 1.5, 3)],  # time, panel letter
)
def test_burned_in_text_away_from_a_bar_becomes_the_background(shared_data, text, scale, thickness):
    # the real HeLa t004 (uint16) with text at 65535 in its corner: the time stamp (0.24% of
    # the field) was the 99.8th percentile, the nuclei were squeezed into the bottom tenth of
    # the range and the network's F1 fell from 0.94 to 0.35 (docs/experiments.md, "Burned-in
    # text"). OpenCV draws it anti-aliased; its glyphs' edges are sharp all the same (the
    # background 2 px out): marks, and the background now with their edges
    raw = _hela(shared_data, "t004")
    cover = np.zeros(raw.shape, np.uint8)
    cv2.putText(cover, text, (10, 40), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness)
    alpha = cover / 255.0
    stamped = raw.copy()
    stamped[cover > 0] = np.round(raw * (1 - alpha) + 65535 * alpha)[cover > 0]
    clean = normalise(raw[None], 1.0, 99.8)[0]
    low, high = np.percentile(raw, [1, 99.8])
    if text != "A":  # the time stamp's edges are the 99.8th percentile: the range x5 or more
        assert np.percentile(stamped, 99.8) - low > 5 * (high - low)
    out = clip_flat_regions(stamped)
    assert (out[cover > 25] <= high).all()  # none above the nuclei, but its faintest edge
    assert np.array_equal(out[cover == 0], raw[cover == 0])  # and nothing else changes
    fixed = normalise(stamped[None], 1.0, 99.8)[0]
    assert np.abs(fixed - clean)[cover == 0].max() < 0.02  # the clean range, within 2%


def test_saturated_nuclei_are_left_as_they_are(shared_data):
    # HeLa t089 itself holds a cell saturated at 36863 (two plateaus of 9x9 and 9x12 px, far
    # above the rest's 99.8th percentile): its ramp is bright 2-3 px out, so no glyph
    raw = _hela(shared_data)
    plateau = raw == raw.max()
    assert plateau.sum() > 100 and raw.max() > np.percentile(raw[~plateau], 99.8) + 1000
    assert clip_flat_regions(raw) is raw
    # an 8-bit export of it whose range ends at half the bright end: the brightest nuclei are
    # flat at 255, but their rims reach up to it
    raw = raw.astype(np.float64)
    low, high = np.percentile(raw, [1, 99.8])
    export = np.round(np.clip((raw - low) / (0.5 * (high - low)), 0, 1) * 255).astype(np.uint8)
    assert (export == 255).mean() > 0.002 and (export == 0).mean() > 0.01
    assert clip_flat_regions(export) is export


def test_a_rotation_with_zero_fill_is_filled(shared_data):
    raw = _hela(shared_data, "t004").astype(np.float32)
    turned = ndi.rotate(raw, 10, reshape=True, order=1, cval=0.0)
    corners = turned == 0
    assert corners.mean() > 0.1
    out = clip_flat_regions(turned)
    assert (out[corners] > 30000).all() and np.array_equal(out[~corners], turned[~corners])


def test_real_fields_black_backgrounds_and_masks_are_left_as_they_are(shared_data):
    gowt1 = _gowt1(shared_data)
    assert (gowt1 == 0).mean() > 0.1  # 8-bit zeros are its background, one level below the rest
    assert clip_flat_regions(gowt1) is gowt1
    corner = gowt1[:128, :128].astype(np.float64)  # background only; an 8-bit gamma-0.5 export
    low, high = np.percentile(corner, [1, 99.8])
    export = np.round(np.clip((corner - low) / (high - low), 0, 1) ** 0.5 * 255).astype(np.uint8)
    assert (export == 0).mean() > 0.5 and export[export > 0].min() > 100  # zeros far below
    assert clip_flat_regions(export) is export  # but scattered among the rest: no solid core
    rows, cols = np.indices((128, 160))
    black = np.zeros((128, 160), np.uint16)  # bright objects on exact zero: the rest is objects
    for y, x in ((30, 30), (30, 100), (90, 60), (95, 130)):
        disc = (rows - y) ** 2 + (cols - x) ** 2 < 10**2
        black[disc] = np.random.default_rng(y).integers(800, 1000, disc.sum())
    assert clip_flat_regions(black) is black
    mask = (black > 0).astype(np.uint8) * 255  # one level besides zero: nothing to measure by
    assert clip_flat_regions(mask) is mask
