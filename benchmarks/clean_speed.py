"""What the cleaning before every normalisation costs per channel: `clip_flat_regions`
(padding, scale bars, their labels, burned-in text) and `remove_hot_pixels`, on real CTC
frames as recorded and with what they are there for.

    python benchmarks/clean_speed.py [--repeat 20]

The frames (../shared, or $CELLSEG_SHARED) as recorded (HeLa t089 holds a cell saturated at
36863), and recorded again by `benchmarks/shifted_ctc.py`: HeLa t089 as an 8-bit export with
saturated nuclei, HeLa t004 and GOWT1 t005 with a scale bar, the bar with its label, and a
time stamp. Prints the best of --repeat rounds of 10 calls,
in ms, and whether the channel changed (the same array back: nothing to clean).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import timeit
from pathlib import Path

import numpy as np
import tifffile

from pipeline.preprocess.flat_regions import clip_flat_regions
from pipeline.preprocess.hot_pixels import remove_hot_pixels

REPO = Path(__file__).resolve().parents[1]
CTC = Path(os.environ.get("CELLSEG_SHARED", REPO.parent / "shared")) / "data" / "ctc"
FRAMES = {
    "HeLa t004": "Fluo-N2DL-HeLa/01/t004.tif",
    "HeLa t089": "Fluo-N2DL-HeLa/01/t089.tif",
    "GOWT1 t005": "Fluo-N2DH-GOWT1/02/t005.tif",
}


def _recordings() -> dict[str, np.ndarray]:
    """Name -> (H, W) channel."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import shifted_ctc

    frames = {name: tifffile.imread(CTC / path) for name, path in FRAMES.items()}
    marks = ("a scale bar (0.3%)", "a scale bar and its label", "a time stamp")
    recorded = [("HeLa t089", "8-bit, saturated")]
    recorded += [(name, mark) for name in ("HeLa t004", "GOWT1 t005") for mark in marks]
    out = dict(frames)
    for name, shift in recorded:
        channel = frames[name]
        empty, rng = np.zeros(channel.shape, np.int32), np.random.default_rng(0)
        out[f"{name}, {shift}"] = shifted_ctc.SHIFTS[shift](channel[None], empty, rng)[0][0]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    print(f"{'channel':42} {'clip_flat_regions':>18} {'remove_hot_pixels':>18}")
    for name, channel in _recordings().items():
        cells = []
        for clean in (clip_flat_regions, remove_hot_pixels):
            call = functools.partial(clean, channel)
            best = min(timeit.repeat(call, number=10, repeat=args.repeat))
            changed = "changed" if clean(channel) is not channel else "as is"
            cells.append(f"{best / 10 * 1e3:7.2f} ms {changed:>7}")
        print(f"{name:42} {cells[0]:>18} {cells[1]:>18}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
