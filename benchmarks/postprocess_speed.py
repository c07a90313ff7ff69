"""Post-processing speed per image on one CPU core: each OpenCV filter against the SciPy or
scikit-image call it replaced (connected parts: the same parts, numbered in OpenCV's order; the
percentile normalisation, counted, against NumPy's sorting), and the whole CPU share of
segmenting one field.

    python benchmarks/postprocess_speed.py [--frame HeLa|GOWT1] [--size 1024 1024] [--repeat 10]

A real CTC frame and its annotation (../shared) mirrored out to --size; the annotation's own
training targets (`pipeline.train.targets`) stand in for a network's output maps, so no model
is needed and the objects are real nuclei. The filters' outputs are checked equal (to float32
rounding) before they are timed. Then, with the post-processing the tuning chose for the
HeLa-trained network of the leave-one-out run (h-maxima seeds 0.03 deep, the shape term, the
size and faint-object cuts; a card trained at 40 px): normalise, the objects' size, instances,
measurements and overlay, in ms each; on a GPU machine their sum is what each post-processing
worker spends per image.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import tifffile
import torch
from scipy import ndimage as ndi
from skimage.measure import label
from skimage.segmentation import find_boundaries, watershed

from pipeline.config import PostprocessConfig
from pipeline.preprocess.samples import normalise
from pipeline.segment import postprocess
from pipeline.segment.card import OUTPUTS, ModelCard
from pipeline.segment.fields import image_objects
from pipeline.segment.filters import (
    Parts,
    edt,
    fill_holes,
    flood,
    gaussian,
    inner_boundaries,
    label_sparse,
    parts,
)
from pipeline.segment.measure import measure, overlay_png
from pipeline.segment.postprocess import h_maxima_inside, to_instances
from pipeline.train.targets import target_maps

CTC = Path(os.environ.get("CELLSEG_SHARED", Path(__file__).parents[2] / "shared")) / "data/ctc"
FRAMES = {  # --frame -> (image, its annotation)
    "HeLa": ("Fluo-N2DL-HeLa/01/t004.tif", "Fluo-N2DL-HeLa/01_ST/SEG/man_seg004.tif"),
    "GOWT1": ("Fluo-N2DH-GOWT1/02/t000.tif", "Fluo-N2DH-GOWT1/02_ST/SEG/man_seg000.tif"),
}


def ms(fn: Callable, repeat: int) -> tuple[float, object]:
    """Median milliseconds of `repeat` calls (after one to warm up) and the last result."""
    out, times = fn(), []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times)), out


def per_part(dist: np.ndarray, fg: np.ndarray, h: float) -> np.ndarray:
    """`h_maxima_inside` as it was: scikit-image's h-maxima on every part."""
    from skimage.morphology import h_maxima

    with mock.patch.object(postprocess, "h_maxima", lambda d, h: h_maxima(d, h).astype(bool)):
        return h_maxima_inside(dist, fg, h)


def sorted_stretch(raw: np.ndarray, low: float, high: float) -> np.ndarray:
    """`normalise` of a (1, H, W) image as it was: NumPy's percentiles of the float32 pixels
    (a partial sort) and the stretch computed on every pixel."""
    ch = raw[0].astype(np.float32)
    lo, hi = np.percentile(ch, [low, high])
    return np.clip((ch - lo) / max(hi - lo, 1e-6), 0, 1)[None].astype(np.float32)


def same(a, b) -> bool:
    """Equal outputs; for two (labels, n) labellings, the same parts whatever their numbers."""
    if isinstance(a, Parts):
        a = (a.labels, a.n)
    if not isinstance(a, tuple):
        return np.allclose(a, b, atol=1e-5)
    (got, n), (want, m) = a, b
    pairs = np.unique(np.stack([got.ravel(), want.ravel()]), axis=1).shape[1]
    return n == m and np.array_equal(got == 0, want == 0) and pairs == n + (got == 0).any()


def grow(array: np.ndarray, h: int, w: int) -> np.ndarray:
    """An (h, w) field: the (H, W) `array` mirrored out (or cropped) to it."""
    pad = ((0, max(0, h - array.shape[0])), (0, max(0, w - array.shape[1])))
    return np.pad(array, pad, mode="symmetric")[:h, :w]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frame", choices=sorted(FRAMES), default="HeLa")
    parser.add_argument("--size", type=int, nargs=2, default=(1024, 1024))
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument(
        "--profile", action="store_true", help="and where a worker's share goes (cProfile)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    import cv2

    cv2.setNumThreads(1)  # one core, as each post-processing worker runs
    h, w = args.size
    image_file, labels_file = (CTC / f for f in FRAMES[args.frame])
    raw = grow(tifffile.imread(image_file), h, w)[None]
    truth = label(grow(tifffile.imread(labels_file), h, w), connectivity=1)  # mirrored: new ids
    maps = target_maps(truth)[:2]
    fg, dist = maps[0] > 0.5, maps[1]
    blurred = gaussian(dist, 2.0)
    seeds = label_sparse(h_maxima_inside(blurred, fg, 0.03))[0]
    print(f"{args.frame} frame mirrored to {h}x{w}, {truth.max()} objects, one core")
    pairs = {  # name -> (this project's, the original)
        "percentile normalisation (counted)": (
            lambda: normalise(raw, 1.0, 99.8),
            lambda: sorted_stretch(raw, 1.0, 99.8),
        ),
        "connected parts": (lambda: parts(fg), lambda: ndi.label(fg)),
        "distance transform": (lambda: edt(fg), lambda: ndi.distance_transform_edt(fg)),
        "seed blur (4 px)": (lambda: gaussian(dist, 4.0), lambda: ndi.gaussian_filter(dist, 4.0)),
        "holes filled": (lambda: fill_holes(fg), lambda: ndi.binary_fill_holes(fg)),
        "h-maxima, part by part": (
            lambda: h_maxima_inside(blurred, fg, 0.03),
            lambda: per_part(blurred, fg, 0.03),
        ),
        "watershed, only parts with several seeds flooded": (
            lambda: flood(-blurred, seeds, fg),
            lambda: watershed(-blurred, seeds, mask=fg).astype(np.int32),
        ),
        "outlines (3 px)": (
            lambda: inner_boundaries(truth, 3),
            lambda: ndi.binary_dilation(find_boundaries(truth, mode="inner"), iterations=2),
        ),
    }
    for name, (new, old) in pairs.items():
        (t_new, a), (t_old, b) = ms(new, args.repeat), ms(old, args.repeat)
        if not same(a, b):
            raise SystemExit(f"{name}: the outputs differ")
        print(f"{name}: {t_new:.1f} ms (was {t_old:.1f} ms, {t_old / t_new:.1f}x), same output")
    card = ModelCard("resnet18", 1, list(OUTPUTS[:2]), ["fluo"], "nuclei", "fluo", 1.0, 99.8)
    card.diameter = 40.0
    card.postprocess = PostprocessConfig(
        seed_h=0.03, seed_shape=1.0, min_relative_size=0.3, min_relative_intensity=0.2
    )
    lo, hi = card.low_percentile, card.high_percentile
    t_norm, image = ms(lambda: normalise(raw, lo, hi), args.repeat)
    t_size, _ = ms(lambda: image_objects(image, card, raw), args.repeat)
    t_inst, labels = ms(lambda: to_instances(maps, image, card), args.repeat)
    t_meas, _ = ms(lambda: measure(labels, raw, card.channels, "f"), args.repeat)
    t_over, png = ms(lambda: overlay_png(raw, labels, image[0]), args.repeat)
    total = t_norm + t_size + t_inst + t_meas + t_over
    print(
        f"one field's CPU work: {total:.0f} ms (normalise {t_norm:.1f}, objects' size "
        f"{t_size:.1f}, instances {t_inst:.1f} ({labels.max()} objects), measurements "
        f"{t_meas:.1f}, overlay {t_over:.1f}, {len(png) // 1024} KiB); "
        f"{1e3 / total:.1f} images/s per core"
    )
    t_all = worker_share(raw, maps, card, args.repeat, args.profile)
    print(
        f"a post-processing worker's whole share of one field (segment_folder's prepare_image "
        f"and finish_image: read, checksum, the above, write the label image, overlay and table; "
        f"arrays handed over as files in a RAM folder): {t_all:.0f} ms, "
        f"{1e3 / t_all:.1f} images/s per worker"
    )


def worker_share(
    raw: np.ndarray, maps: np.ndarray, card: ModelCard, repeat: int, profile: bool = False
) -> float:
    """Median ms of `prepare_image` + `finish_image` on the (1, H, W) `raw` field as a TIF with
    `maps` for its network output, as one of `segment_folder`'s workers runs them; with
    `profile`, the 25 functions that took most of `repeat` more calls' time are printed too."""
    from pipeline.segment.batch import finish_image, prepare_image
    from pipeline.segment.handoff import Slots, handoff

    with tempfile.TemporaryDirectory() as folder, handoff(True) as parcels:
        tif, out, ids = (
            Path(folder) / "field.tif",
            Path(folder) / "out",
            {"sha256": "", "model_id": ""},
        )
        tifffile.imwrite(tif, raw[0])
        out.mkdir()
        slot = Slots(parcels, keep=1).put(maps.astype(np.float32))  # as the network's process

        def one() -> None:
            path, _, image_raw, image, _, size = prepare_image(tif, card, 0.0, None, parcels)
            finish_image(out, path, image_raw, image, slot, card, size, ids, False)

        median = ms(one, repeat)[0]
        if profile:
            import cProfile
            import pstats

            with cProfile.Profile() as prof:
                for _ in range(repeat):
                    one()
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return median


if __name__ == "__main__":
    main()
