"""Inference at any size: tiled and whole-image prediction agree."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipeline.config import PostprocessConfig
from pipeline.segment.card import OUTPUTS, ModelCard
from pipeline.segment.inference import (
    batch_key,
    card_maps,
    card_maps_batch,
    predict_labels,
    predict_maps,
)
from pipeline.segment.network import build_model, for_inference
from pipeline.segment.passes import (
    EDGE_MARGIN,
    edge_pads,
    is_channels_last,
    network_batch,
    tile_sides,
)


def test_tiled_and_whole_image_inference_agree_on_odd_sides():
    # A pointwise model: every tile must give exactly the whole image's values, so a misplaced,
    # cropped or badly blended tile shows. A 5 x 5 model differs only in the narrow bands where
    # a tile's edge met a mirror instead of its neighbours, and the Gaussian blending keeps
    # those small.
    torch.manual_seed(0)
    image = np.random.default_rng(0).random((1, 250, 330)).astype(np.float32)  # odd sides
    cpu = torch.device("cpu")
    whole_cfg, tiled_cfg = PostprocessConfig(tile_size=512), PostprocessConfig(tile_size=96)
    pointwise = torch.nn.Conv2d(1, 2, 1).eval()
    whole = predict_maps(pointwise, image, cpu, whole_cfg, precision="fp32")
    tiled = predict_maps(pointwise, image, cpu, tiled_cfg, precision="fp32")
    assert whole.shape == tiled.shape == (2, 250, 330)
    np.testing.assert_allclose(tiled, whole, atol=1e-6)
    local = torch.nn.Conv2d(1, 2, 5, padding=2).eval()
    diff = np.abs(
        predict_maps(local, image, cpu, tiled_cfg, precision="fp32")
        - predict_maps(local, image, cpu, whole_cfg, precision="fp32")
    )
    assert diff.mean() < 0.005 and np.median(diff) < 1e-6, (diff.mean(), np.median(diff))


@pytest.mark.parametrize("tile_size", [512, 96])  # whole, and as tiles
def test_the_network_meets_no_edge_at_a_fields_edges(tile_size):
    # A convolution with zero padding sees a field's edge as darkness: before, the network met
    # the top and left edges that way and drew the nuclei cut by them fainter there. Mirrored at
    # every edge, a uniform field gives uniform maps, up to its last row and column.
    conv = torch.nn.Conv2d(1, 2, 5, padding=2).eval()
    torch.nn.init.constant_(conv.weight, 0.1), torch.nn.init.zeros_(conv.bias)
    image = np.ones((1, 250, 330), np.float32)
    for flips in (False, True):
        post = PostprocessConfig(tile_size=tile_size, flip_tta=flips)
        maps = predict_maps(conv, image, torch.device("cpu"), post, precision="fp32")
        np.testing.assert_allclose(maps, 1 / (1 + np.exp(-2.5)), rtol=1e-5)
    # a side's mirror is 8 px or more at each end, its sum a multiple of 32
    for side in (30, 250, 707, 1024, 1388):
        before, after = edge_pads(side)
        assert min(before, after) >= 8 and (side + before + after) % 32 == 0 and after - before <= 1
        assert before + after < 8 * 2 + 32, (side, before, after)


def test_tiles_are_as_many_as_full_tiles_need_and_no_larger_than_needed():
    # MONAI's own placement, recorded: the balanced tiles never need more windows than full
    # ones, and cover the field with less area (MONAI pads a side shorter than a full tile up to
    # it: the HeLa frame's 1302 px side ran as 1536, the extra rows zeros, unlike a whole field)
    from monai.inferers import sliding_window_inference

    def windows(shape: tuple[int, int], roi: tuple[int, int]) -> list[tuple[int, int]]:
        seen = []

        def record(x: torch.Tensor) -> torch.Tensor:
            seen.append(tuple(x.shape[-2:]))
            return x

        sliding_window_inference(torch.zeros(1, 1, *shape), roi, 1, record, overlap=0.25)
        return seen

    assert tile_sides((1302, 2046), 1536, 0.25) == (1302, 1200)  # 3.1 Mpx of tiles, not 4.7
    for shape in ((1302, 2046), (1890, 2970), (1537, 1537), (700, 5000), (3100, 3100)):
        sides = tile_sides(shape, 1536, 0.25)
        full, ours = windows(shape, (1536, 1536)), windows(shape, sides)
        assert len(ours) <= len(full) and set(ours) == {sides}, (shape, sides)
        assert max(sides) <= 1536 and len(ours) * sides[0] * sides[1] < len(full) * 1536**2
        # a tile is run mirrored out by EDGE_MARGIN px and no more: 16 px short of a multiple
        # of 32 (tiles of 1088 x 1216 ran as 1120 x 1248, these 1104 x 1200 as 1120 x 1216)
        cut = [s for s, side in zip(sides, shape, strict=True) if s < side]
        assert all(edge_pads(s) == (EDGE_MARGIN, EDGE_MARGIN) for s in cut), (shape, sides)
    assert tile_sides((300, 400), 512, 0.25) == (300, 400)  # one tile: the field itself


def test_unet_predicts_maps_and_labels_for_a_field_larger_than_a_tile():
    torch.manual_seed(0)
    model = build_model("resnet18", in_channels=1, classes=2).eval()
    image = np.random.default_rng(1).random((1, 200, 290)).astype(np.float32)
    card = ModelCard("resnet18", 1, list(OUTPUTS[:2]), ["fluo"], "nuclei", "fluo", 1.0, 99.8)
    card.postprocess.tile_size = 128
    maps = predict_maps(model, image, torch.device("cpu"), card.postprocess)
    assert maps.shape == (2, 200, 290) and 0 <= maps.min() and maps.max() <= 1
    labels = predict_labels(model, image, torch.device("cpu"), card)
    assert labels.shape == (200, 290) and labels.dtype == np.int32


def test_inference_leaves_the_model_as_it_was_and_bf16_stays_close_to_fp32():
    torch.manual_seed(0)
    model = build_model("resnet18", in_channels=1, classes=2).train()
    image = np.random.default_rng(2).random((1, 100, 140)).astype(np.float32)
    cpu, post = torch.device("cpu"), PostprocessConfig()
    full = predict_maps(model, image, cpu, post, precision="fp32")
    half = predict_maps(model, image, cpu, post, precision="bf16")
    assert np.abs(full - half).max() < 0.05
    assert model.training and not is_channels_last(model)  # mode and memory format kept
    fast = for_inference(model)  # BatchNorm folded, channels-last: network_maps changes nothing
    folded = predict_maps(fast, image, cpu, post, precision="fp32")
    assert is_channels_last(fast) and not fast.training
    assert np.abs(folded - full).max() < 1e-4


def test_auto_precision_is_fp32_where_onednn_is_held_below_native_bf16():
    # on a CPU with AMX, oneDNN held to AVX2 computed the network in emulated bf16 at 8x fp32's
    # time (12.7 s a field against 1.5 s): `auto` must not pick bf16 there
    code = "from pipeline.segment.passes import cpu_bf16; print(cpu_bf16())"
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    held = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert held.returncode == 0 and held.stdout.strip() == "False", held.stderr[-2000:]


def test_maps_written_into_a_given_array_are_the_maps_returned():
    torch.manual_seed(0)
    model = build_model("resnet18", in_channels=1, classes=2).eval()
    image = np.random.default_rng(3).random((1, 90, 130)).astype(np.float32)
    cpu, post = torch.device("cpu"), PostprocessConfig(tile_size=64)  # tiled
    for kwargs in ({}, {"diameter": 20.0, "objects": 40.0}):  # as it is; rescaled x0.5
        want = predict_maps(model, image, cpu, post, precision="fp32", **kwargs)
        into = np.full((2, 90, 130), np.nan, np.float32)
        got = predict_maps(model, image, cpu, post, precision="fp32", out=into, **kwargs)
        assert got is into and np.array_equal(into, want)
    with pytest.raises(ValueError, match=r"float32 \(2, 90, 130\)"):
        predict_maps(model, image, cpu, post, out=np.zeros((1, 90, 130), np.float32))


def test_flip_tta_makes_the_output_flip_equivariant_and_leaves_a_pointwise_model_unchanged():
    torch.manual_seed(0)
    image = np.random.default_rng(3).random((1, 96, 128)).astype(np.float32)
    cpu, tta = torch.device("cpu"), PostprocessConfig(flip_tta=True)
    skewed = torch.nn.Conv2d(1, 2, 5, padding=2).eval()  # sees each flip differently
    plain = predict_maps(skewed, image, cpu, PostprocessConfig(), precision="fp32")
    flipped_plain = predict_maps(skewed, image[:, ::-1], cpu, PostprocessConfig(), "fp32")
    assert np.abs(flipped_plain[:, ::-1] - plain).max() > 1e-3
    maps = predict_maps(skewed, image, cpu, tta, precision="fp32")
    for axes in ((1,), (2,), (1, 2)):
        flipped = predict_maps(skewed, np.flip(image, axes), cpu, tta, precision="fp32")
        np.testing.assert_allclose(np.flip(flipped, axes), maps, atol=1e-5)
    pointwise = torch.nn.Conv2d(1, 2, 1).eval()
    np.testing.assert_allclose(
        predict_maps(pointwise, image, cpu, tta, precision="fp32"),
        predict_maps(pointwise, image, cpu, PostprocessConfig(), precision="fp32"),
        atol=1e-6,
    )


@pytest.mark.parametrize("precision", ["fp32", "auto"])  # auto: bf16 where the CPU has it
def test_fields_through_the_network_in_one_batch_get_each_fields_own_maps(precision):
    torch.manual_seed(0)
    model = for_inference(build_model("resnet18", in_channels=1, classes=2))
    card = ModelCard("resnet18", 1, list(OUTPUTS[:2]), ["fluo"], "nuclei", "fluo", 1.0, 99.8)
    card.diameter, cpu = 20.0, torch.device("cpu")
    rng = np.random.default_rng(4)
    images = [rng.random((1, 70, 90)).astype(np.float32) for _ in range(3)]
    objects = [19.0, 22.0, 21.0]  # within the tolerance: all seen as they are
    for flips in (False, True):
        card.postprocess.flip_tta = flips
        alone = [
            card_maps(model, im, cpu, card, precision, objects=o)
            for im, o in zip(images, objects, strict=True)
        ]
        intos = [np.full((2, 70, 90), np.nan, np.float32) for _ in images]
        together = card_maps_batch(model, images, cpu, card, objects, precision, outs=intos)
        assert all(got is into for got, into in zip(together, intos, strict=True))
        for one, batched in zip(alone, together, strict=True):
            np.testing.assert_allclose(batched, one, atol=1e-5 if precision == "fp32" else 1e-2)
    shrunk = card_maps_batch(model, images[:2], cpu, card, [40.0, 40.0], precision)  # x0.5
    for image, maps in zip(images[:2], shrunk, strict=True):
        want = card_maps(model, image, cpu, card, precision, objects=40.0)
        np.testing.assert_allclose(maps, want, atol=1e-5 if precision == "fp32" else 1e-2)
    assert batch_key((1, 70, 90), card, 0.0) is None  # objects still to be measured: alone
    assert batch_key((1, 70, 90), card, 40.0) == ((1, 70, 90), (35, 45))
    with pytest.raises(ValueError, match=r"one shape.*\(1, 70, 90\).*\(35, 45\)"):
        card_maps_batch(model, images[:2], cpu, card, [20.0, 40.0])  # seen at two sizes
    with pytest.raises(ValueError, match="objects measured"):
        card_maps_batch(model, images[:2], cpu, card, [20.0, 0.0])
    with pytest.raises(ValueError, match=r"one shape, got shapes \[\(1, 70, 90\), \(1, 70, 91\)\]"):
        network_batch(model, [images[0], np.zeros((1, 70, 91), np.float32)], cpu, card.postprocess)
