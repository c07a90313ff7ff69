"""Colour images as one channel: grey and single-colour lookups give their intensity,
composites of stains are named with the fix."""

import logging

import numpy as np
import tifffile

from pipeline.colour import colour_intensity, is_composite


def test_colour_images_give_their_largest_channel():
    v = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    zero = np.zeros_like(v)
    green = np.dstack([zero, v, zero])  # a green lookup
    magenta = np.dstack([v, zero, v])
    bbbc020 = np.dstack([v // 2, v // 2, v])  # R equals G, as BBBC020's false colour
    for rgb in (green, magenta, bbbc020, np.dstack([v, v, v, zero])):
        assert np.array_equal(colour_intensity(rgb), v)
    stack = np.stack([v, v, v])  # (3, H, W) channels: not colour
    assert colour_intensity(stack) is stack and colour_intensity(v) is v


def test_a_composite_of_stains_is_named_with_the_fix(shared_data, demo_root, caplog):
    # real nuclei in blue (HeLa t089, 8-bit) and other real nuclei in red (GOWT1 t005's
    # corner), as a two-stain merge would hold them; single lookups of the same pixels pass
    hela = tifffile.imread(shared_data / "ctc" / "Fluo-N2DL-HeLa" / "01" / "t089.tif")
    gowt1 = tifffile.imread(shared_data / "ctc" / "Fluo-N2DH-GOWT1" / "02" / "t005.tif")
    hela = hela[:700, :1024]
    low, high = np.percentile(hela, [1, 99.8])
    blue = (np.clip((hela - low) / (high - low), 0, 1) * 255).astype(np.uint8)
    red = np.clip(gowt1[:700].astype(np.int32) * 5, 0, 255).astype(np.uint8)
    zero = np.zeros_like(blue)
    merged = np.dstack([red, zero, blue])
    assert is_composite(merged)
    with caplog.at_level(logging.WARNING, logger="pipeline.colour"):
        assert np.array_equal(colour_intensity(merged, "merge.png"), np.maximum(red, blue))
    assert "merge.png: colours that vary apart (a composite of stains" in caplog.text
    assert "--channel K" in caplog.text
    caplog.clear()
    singles = (np.dstack([zero, blue, zero]), np.dstack([blue] * 3), np.dstack([blue, zero, blue]))
    for single in singles:
        assert not is_composite(single)
        colour_intensity(single, "single.png")
    assert not caplog.text
    # BBBC020's layout: c1 red equal to green, c5 blue, and the two merged
    field = next((demo_root / "BBBC020_v1_images").iterdir())
    for name, merge in ((f"{field.name}_c1", False), (f"{field.name}_c5", False)):
        assert is_composite(tifffile.imread(field / f"{name}.TIF")) is merge
    assert is_composite(tifffile.imread(field / f"{field.name}_(c1+c5).TIF"))
