"""The network against the classical watershed when the microscope changes.

    python benchmarks/shifted_ctc.py --model MODEL_FOLDER [--shared ../shared/data] [--work DIR]

MODEL_FOLDER is a trained model (a run's ``train/`` folder or a registered version), e.g. of
`cellseg run --config configs/ctc_nuclei.yaml`. The test block of each Cell Tracking Challenge
set in ../shared is recorded again, in silico, as another microscope would record it
(`SHIFTS`: half and double the magnification, a low photon count, defocus, uneven
illumination, an 8-bit export through a gamma lookup or with the brightest nuclei saturated,
out-of-focus haze, a tenth of the nuclei four times brighter, half the magnification, haze
and few photons at once, a tenth of the field zeroed as registration or stitching pads it,
a scale bar burned in, with its label, a time stamp burned in, and a bright blob of debris),
and scored for the network's own
instances (the card's settings, the size measured on each image as `cellseg predict` does)
and for the classical watershed with the parameters tuned for the set as recorded
(configs/ctc_gowt1.yaml,
configs/ctc_hela.yaml): neither method is re-tuned, as neither would be on a user's new
microscope. Label images follow the geometric shifts (nearest neighbour);
the border policy is the set's config's. Prints one table: mean over the test frames.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CELLSEG_SHARED", REPO.parent / "shared")) / "data"
COLUMNS = ["fg_iou", "f1", "map", "aji"]
Shift = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def _zoom(factor: float) -> Shift:
    """Another magnification by a whole `factor` (k or 1/k): the (C, H, W) image resampled
    (block means when shrinking, bilinear when enlarging), the (H, W) labels to match: each
    pixel repeated k x k times, or each k x k block an object where at least half of it is
    (the block's largest label: where two nuclei touch, one of them)."""
    k = round(max(factor, 1 / factor))
    if abs(k - max(factor, 1 / factor)) > 1e-9:
        raise ValueError(f"zoom factor must be a whole number or its inverse, got {factor}")

    def shift(raw, labels, rng):
        from pipeline.segment.scale import resize

        if factor >= 1:
            big = np.repeat(np.repeat(labels, k, axis=0), k, axis=1)
            return resize(raw, big.shape), big
        h, w = (n // k for n in labels.shape)
        blocks = labels[: h * k, : w * k].reshape(h, k, w, k).transpose(0, 2, 1, 3)
        flat = blocks.reshape(h, w, k * k)
        small = np.where((flat > 0).mean(axis=-1) >= 0.5, flat.max(axis=-1), 0)
        return resize(raw[:, : h * k, : w * k], (h, w)), small.astype(labels.dtype)

    return shift


def _signal(raw: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(C, H, W) float64 image, its background (1st percentile) and its bright end (99.8th)."""
    x = raw.astype(np.float64)
    low, high = np.percentile(x, [1, 99.8])
    return x, float(low), float(max(high, low + 1e-6))


def low_light(raw, labels, rng, photons: float = 20.0, background: float = 2.0):
    """Few photons: the signal scaled so the bright end collects `photons`, Poisson noise."""
    x, low, high = _signal(raw)
    expected = background + np.clip(x - low, 0, None) / (high - low) * photons
    return rng.poisson(expected).astype(np.float32), labels


def defocus(raw, labels, rng, fraction: float = 0.1):
    """Out of focus: a Gaussian blur a tenth of the nuclei's median diameter wide."""
    from pipeline.segment.scale import median_diameter

    sigma = fraction * median_diameter(labels)
    return ndi.gaussian_filter(raw.astype(np.float32), (0, sigma, sigma)), labels


def uneven(raw, labels, rng, darkest: float = 0.3):
    """Uneven illumination: the signal above the camera's offset falls from full at one side
    of the field to `darkest` at the other."""
    x, low, _ = _signal(raw)
    ramp = np.linspace(1.0, darkest, x.shape[-1])
    return (low + (x - low) * ramp).astype(np.float32), labels


def gamma_8bit(raw, labels, rng, gamma: float = 0.5):
    """An 8-bit export through a display lookup (gamma 0.5 brightens dim objects)."""
    x, low, high = _signal(raw)
    y = np.clip((x - low) / (high - low), 0, 1) ** gamma
    return np.round(y * 255).astype(np.uint8), labels


def saturated(raw, labels, rng, clip: float = 0.5):
    """An 8-bit export whose range ends at `clip` x the bright end: the brightest nuclei
    saturate at 255."""
    x, low, high = _signal(raw)
    y = np.clip((x - low) / (clip * (high - low)), 0, 1)
    return np.round(y * 255).astype(np.uint8), labels


def haze(raw, labels, rng, strength: float = 0.5):
    """Out-of-focus light (a widefield microscope, a thick sample): the signal blurred over
    three nuclei's median diameter, its peak `strength` x the bright end, added."""
    from pipeline.segment.scale import median_diameter

    x, low, high = _signal(raw)
    sigma = 3 * median_diameter(labels)
    glow = ndi.gaussian_filter(np.clip(x - low, 0, None), (0, sigma, sigma))
    glow *= strength * (high - low) / max(float(glow.max()), 1e-9)
    return (x + glow).astype(np.float32), labels


def bright_nuclei(raw, labels, rng, share: float = 0.1, brightness: float = 4.0):
    """Some nuclei far brighter than the rest (mitotic or dying ones, a stain taken up
    unevenly): each with probability `share`, its signal above the background times
    `brightness` (the gain blurred by 1 px). They move the percentiles the image is
    normalised by, so the others reach the network dimmer."""
    x, low, _ = _signal(raw)
    ids = np.unique(labels[labels > 0])
    gain = np.ones(int(labels.max()) + 1, np.float32)
    gain[ids[rng.random(ids.size) < share]] = brightness
    return (low + (x - low) * ndi.gaussian_filter(gain[labels], 1.0)).astype(np.float32), labels


def padded(raw, labels, rng, share: float = 0.1):
    """Padding (registration, drift correction, stitching): the first `share` of the rows
    zeroed, far below a camera's offset, and the labels there with them."""
    rows = int(round(share * labels.shape[0]))
    x, truth = raw.copy(), labels.copy()
    x[:, :rows] = 0
    truth[:rows] = 0
    return x, truth


def scale_bar(raw, labels, rng, share: float = 0.003, height: int = 12, label: str = ""):
    """A scale bar burned in at the format's maximum (`_burn`), 30 px from the lower right
    corner, `height` px high and as long as makes `share` of the field, with its `label` above
    it (anti-aliased, as Fiji draws it); the nuclei they hide are hidden in the labels too."""
    h, w = labels.shape
    length = int(share * h * w / height)
    cover = np.zeros((h, w), np.uint8)
    cover[h - 30 - height : h - 30, w - 30 - length : w - 30] = 255
    if label:  # as tall as the bar, 8 px above it
        scale = height / 17
        _text(cover, label, (w - 30 - length, h - 38 - height), scale, max(1, round(2 * scale)))
    return _burn(raw, labels, cover)


def time_stamp(raw, labels, rng, text: str = "00:05:00"):
    """A time stamp burned in at the format's maximum (`_burn`), anti-aliased, 10 px from the
    upper left corner, its height a fiftieth of the field's width (22 px on a CTC frame); the
    nuclei it hides are hidden in the labels too."""
    cover = np.zeros(labels.shape, np.uint8)
    scale = labels.shape[1] / 1100
    _text(cover, text, (10, 10 + round(22 * scale)), scale, max(1, round(2 * scale)))
    return _burn(raw, labels, cover)


def _text(cover: np.ndarray, text: str, corner: tuple[int, int], scale: float, thick: int):
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(cover, text, corner, font, scale, 255, thick, cv2.LINE_AA)


def _burn(raw, labels, cover: np.ndarray):
    """`raw` with the (H, W) uint8 `cover` (255: the mark's, fractions: its anti-aliased edges)
    blended in at the format's maximum (4x the brightest pixel for floats); the labels with
    every pixel in the cover's box hidden (0)."""
    top = np.iinfo(raw.dtype).max if raw.dtype.kind in "ui" else 4 * float(raw.max())
    alpha = cover / 255.0
    x = raw * (1 - alpha) + top * alpha  # float64
    x = (np.round(x) if raw.dtype.kind in "ui" else x).astype(raw.dtype)
    rows, cols = np.nonzero(cover)
    truth = labels.copy()
    truth[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = 0
    return x, truth


def debris(raw, labels, rng, size: float = 2.0, brightness: float = 10.0):
    """A bright blob (debris, a dead cell, a bead) `size` x the nuclei's median diameter across
    at `brightness` x the bright end, its edge blurred by 2 px, placed clear of every nucleus
    (none when no place is clear); not an object of the labels."""
    from pipeline.segment.scale import median_diameter

    x, low, high = _signal(raw)
    radius = size * median_diameter(labels) / 2
    clear = ~ndi.binary_dilation(labels > 0, iterations=int(radius) + 2)
    rows, cols = np.indices(labels.shape)
    inside = (rows >= radius) & (rows < labels.shape[0] - radius)
    inside &= (cols >= radius) & (cols < labels.shape[1] - radius)
    centres = np.argwhere(inside & (ndi.distance_transform_edt(clear) > radius))
    if not len(centres):
        return x.astype(np.float32), labels
    cy, cx = centres[rng.integers(len(centres))]
    blob = ndi.gaussian_filter(((rows - cy) ** 2 + (cols - cx) ** 2 < radius**2) * 1.0, 2.0)
    return (x + blob * brightness * (high - low)).astype(np.float32), labels


def colour_jpeg(raw, labels, rng, top: int = 50, quality: int = 90):
    """A colour JPEG export in blue (DAPI, Hoechst): the signal over 0-`top` of 255 in the blue
    channel, saved by Pillow at `quality` (4:2:0 chroma), read back as `cellseg predict` reads
    colour (the largest of R, G and B)."""
    import io

    from PIL import Image

    from pipeline.colour import colour_intensity

    x, low, high = _signal(raw)
    rgb = np.zeros((*labels.shape, 3), np.uint8)
    rgb[..., 2] = np.round(np.clip((x[0] - low) / (high - low), 0, 1) * top)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return colour_intensity(np.asarray(Image.open(io.BytesIO(buffer.getvalue()))))[None], labels


def _chain(*shifts: Shift) -> Shift:
    """The `shifts` one after the other (a small-nucleus field, hazed, with few photons)."""

    def shift(raw, labels, rng):
        for one in shifts:
            raw, labels = one(raw, labels, rng)
        return raw, labels

    return shift


SHIFTS: dict[str, Shift] = {
    "as recorded": lambda raw, labels, rng: (raw, labels),
    "half magnification": _zoom(0.5),
    "double magnification": _zoom(2.0),
    "low light (20 photons)": low_light,
    "defocus": defocus,
    "uneven illumination": uneven,
    "8-bit, gamma 0.5": gamma_8bit,
    "8-bit, saturated": saturated,
    "haze": haze,
    "a tenth of the nuclei x4": bright_nuclei,
    "x0.5, haze, 20 photons": _chain(_zoom(0.5), haze, low_light),
    "a tenth zeroed (padding)": padded,
    "a scale bar (0.3%)": scale_bar,
    "a scale bar and its label": functools.partial(scale_bar, label="10 um"),
    "a time stamp": time_stamp,
    "debris (2 diameters, x10)": debris,
    "a dim blue JPEG (0-50, q90)": colour_jpeg,
}


def _classical():
    """benchmarks/classical_ctc.py (its configs per set), importable however this file is."""
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    import classical_ctc

    return classical_ctc


def score_dataset(
    name: str,
    model_dir: str,
    shared: Path,
    work: Path,
    seed: int = 0,
    recorded: list[str] | None = None,
) -> list:
    """Metric rows (dataset, shift, method, mean metrics) for one CTC set's test block, under
    each shift named in `recorded` (default: all of SHIFTS). Each shift draws from its own
    generator seeded with `seed`, so its rows do not depend on which others run."""
    from pipeline.evaluate.metrics import score_image
    from pipeline.ingest.dataset import ingest
    from pipeline.ingest.layouts import method_channel
    from pipeline.preprocess.prepare import preprocess
    from pipeline.preprocess.samples import load_split, normalise
    from pipeline.segment.artifact import load_model
    from pipeline.segment.classical import MethodInput, segment
    from pipeline.segment.inference import card_maps
    from pipeline.segment.network import for_inference
    from pipeline.segment.postprocess import to_instances

    cfg = _classical().ctc_config(name, shared, work)
    prepared = preprocess(ingest(cfg).uri, cfg, work / "prepared" / name)
    channel = method_channel(cfg.data.layout, cfg.data.target, None, prepared.channels)
    model, card = load_model(model_dir)
    model = for_inference(model)
    device = next(model.parameters()).device
    samples, rows = load_split(prepared.uri, "test"), []
    for shift_name in recorded or list(SHIFTS):
        shift, rng = SHIFTS[shift_name], np.random.default_rng(seed)
        scores: dict[str, list[dict]] = {"unet": [], "watershed (tuned as recorded)": []}
        for sample in samples:
            raw, truth = shift(sample.raw, sample.labels[cfg.data.target], rng)
            image = normalise(raw, card.low_percentile, card.high_percentile, card.normalisation)
            labels = to_instances(card_maps(model, image, device, card, raw=raw), image, card)
            x = MethodInput(
                raw, prepared.channels, channel, cfg.data.target, cfg.baseline.watershed
            )
            for method, pred in (
                ("unet", labels),
                ("watershed (tuned as recorded)", segment("watershed", x)),
            ):
                scores[method].append(
                    score_image(pred, truth, border_policy=cfg.evaluate.border_policy)
                )
        for method, per_field in scores.items():
            mean = pd.DataFrame(per_field)[COLUMNS].mean()
            rows.append({"dataset": name, "recorded": shift_name, "method": method, **mean})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a trained model folder")
    parser.add_argument("--shared", type=Path, default=SHARED, help="folder holding ctc/")
    parser.add_argument("--work", type=Path, help="output folder (default: a new temp folder)")
    sets = list(_classical().DATASETS)
    parser.add_argument("--datasets", nargs="*", default=sets, choices=sets)
    parser.add_argument(
        "--recorded",
        nargs="*",
        choices=list(SHIFTS),
        metavar="NAME",
        # argparse formats help with %: "(0.3%)" would stop --help
        help="only these recordings (default: all): "
        + ", ".join(map(repr, SHIFTS)).replace("%", "%%"),
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not (args.shared / "ctc").is_dir():
        parser.error(f"{args.shared / 'ctc'} not found; pass --shared or set CELLSEG_SHARED")
    from pipeline.errors import DataError
    from pipeline.segment.artifact import read_card

    try:
        read_card(args.model)  # a wrong --model stops before any data is prepared
    except DataError as err:
        parser.error(str(err))
    work = args.work or Path(tempfile.mkdtemp(prefix="cellseg-shifted-"))
    rows = []
    for name in args.datasets:
        start = time.perf_counter()
        rows += score_dataset(name, args.model, args.shared, work, recorded=args.recorded)
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    table = pd.DataFrame(rows).set_index(["dataset", "recorded", "method"])[COLUMNS]
    print(table.round(3).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
