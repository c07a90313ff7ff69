"""What the network draws in fields without nuclei, with and without the empty-field cut.

    python benchmarks/empty_fields.py --model MODEL [--shared ../shared/data] [--size 128 256]

Cuts square crops (each `--size`) out of the real frames of both Cell Tracking Challenge sets in
../shared where no nucleus of the silver truth lies within 20 px (nor the frame's edge, whose
nuclei that truth skips): the fields a user gets from an empty well or from tiling a slide
away from the cells. Each crop is segmented alone, as `cellseg predict` would (normalised to its
own percentiles, its object size measured), as recorded and as two other microscopes would
record it (`shifted_ctc.py`: 20 photons, an 8-bit gamma-0.5 export), with the card's
``postprocess.min_field_contrast`` and with it off (0). Prints, per set and recording: crops,
crops with any object, objects, and the mean share of the crop drawn as foreground.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CELLSEG_SHARED", REPO.parent / "shared")) / "data"
SETS = ("Fluo-N2DH-GOWT1", "Fluo-N2DL-HeLa")
CLEARANCE = 20  # px between a crop and every nucleus of the truth, and the frame's edge


def labelled_frames(folder: Path, per_sequence: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(frame (H, W) float32, its silver truth (H, W) labels) for `per_sequence` of the labelled
    frames of each sequence of one CTC set (`folder`, read by the ingest stage's CTC layout),
    spread over the sequence."""
    from pipeline.ingest.layouts.ctc import parse_ctc

    fields = [f for f in parse_ctc(folder).fields if "nuclei" in f.labels]
    frames = []
    for group in sorted({f.group for f in fields}):
        labelled = [f for f in fields if f.group == group]
        for f in labelled[:: max(1, len(labelled) // per_sequence)]:
            frames.append((f.image[0].astype(np.float32), f.labels["nuclei"]))
    return frames


def empty_crops(frames: list, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """(1, size, size) crops of the (frame, truth) `frames`, at most one per frame, at a random
    place CLEARANCE px or more from every true nucleus and from the frame's edge."""
    crops = []
    for raw, truth in frames:
        near = ndi.binary_dilation(truth > 0, iterations=CLEARANCE)
        near[:, :CLEARANCE] = near[:, -CLEARANCE:] = True
        near[:CLEARANCE] = near[-CLEARANCE:] = True
        total = np.pad(near.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        inside = total[size:, size:] - total[:-size, size:] - total[size:, :-size]
        ys, xs = np.nonzero(inside + total[:-size, :-size] == 0)  # windows clear of them all
        if ys.size:
            i = rng.integers(ys.size)
            crops.append(raw[ys[i] : ys[i] + size, xs[i] : xs[i] + size][None])
    return crops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a trained model folder")
    parser.add_argument("--shared", type=Path, default=SHARED, help="folder holding ctc/")
    parser.add_argument("--size", type=int, nargs="+", default=[128, 256], help="crop sides, px")
    parser.add_argument("--frames", type=int, default=6, help="frames per sequence")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not (args.shared / "ctc").is_dir():
        parser.error(f"{args.shared / 'ctc'} not found; pass --shared or set CELLSEG_SHARED")
    import torch
    from shifted_ctc import gamma_8bit, low_light  # run as a script: benchmarks/ is on the path

    from pipeline.preprocess.samples import normalise
    from pipeline.segment.artifact import load_model
    from pipeline.segment.fields import image_objects
    from pipeline.segment.inference import predict_labels

    shifts = {"as recorded": None, "20 photons": low_light, "8-bit, gamma 0.5": gamma_8bit}
    model, card = load_model(args.model, torch.device("cpu"))
    cards = {"cut": card, "no cut": card.for_prediction(min_field_contrast=0.0)}
    cut = card.postprocess.min_field_contrast
    rng, rows = np.random.default_rng(0), []
    for name in SETS:
        frames = labelled_frames(args.shared / "ctc" / name, args.frames)
        crops = [c for size in args.size for c in empty_crops(frames, size, rng)]
        for shift_name, shift in shifts.items():
            for raw in crops:
                raw = raw if shift is None else shift(raw, None, rng)[0]
                image = normalise(
                    raw, card.low_percentile, card.high_percentile, card.normalisation
                )
                objects = image_objects(image, card, raw)
                row = {"set": name, "recorded": shift_name}
                for how, c in cards.items():
                    labels = predict_labels(model, image, torch.device("cpu"), c, objects=objects)
                    row |= {
                        f"objects, {how}": labels.max(),
                        f"fg share, {how}": (labels > 0).mean(),
                    }
                rows.append(row)
    table = pd.DataFrame(rows)
    summary = table.groupby(["set", "recorded"], sort=False).agg(
        crops=("objects, cut", "size"),
        **{
            f"with objects, {how}": (f"objects, {how}", lambda v: int((v > 0).sum()))
            for how in cards
        },
        **{f"objects, {how}": (f"objects, {how}", "sum") for how in cards},
        **{f"fg share, {how}": (f"fg share, {how}", "mean") for how in cards},
    )
    print(f"min_field_contrast {cut} (the card's) against 0; crops of {args.size} px")
    print(summary.round(3).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
