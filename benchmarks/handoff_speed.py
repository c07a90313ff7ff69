"""What handing one image's arrays between `segment_folder`'s processes costs the network's process.

    python benchmarks/handoff_speed.py [--size 1024 1024] [--channels 1] [--images 40]

Per image, as `segment_folder` does with workers: a worker returns the raw (uint16) and
normalised (float32) image; this process reads the normalised one (for the network) and sends
raw, normalised and the (2, H, W) float32 output maps to a worker, which reads all three. Timed
three ways: pickled through the process pool's pipes (first), as new .npy files in a RAM folder
(`pipeline.segment.handoff`, second), and so with the maps in reused files (`handoff.Slots`,
what `segment_folder` does now). Prints this process's CPU time per image (all its threads:
the pool's pickling runs in threads beside the network's) and the wall time per round trip.
At 100 images/s the network's process has 10 ms per image for everything.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from pipeline.segment.handoff import Handoff, Slots, handoff, load, take


def prepare(shape: tuple[int, ...], parcels: Handoff | None):
    raw = np.full(shape, 7, np.uint16)
    image = raw.astype(np.float32) / 100
    return (raw, image) if parcels is None else (parcels.put(raw), parcels.put(image))


def finish(raw, image, maps) -> float:
    if isinstance(raw, str):
        raw, image = take(raw), take(image)
        maps = load(maps) if "slot-" in maps else take(maps)
    return float(raw[0, 0, 0]) + float(image[0, 0, 0]) + float(maps[0, 0, 0])


def run(pool, shape, n: int, parcels: Handoff | None, slots: Slots | None) -> tuple[float, float]:
    """(this process's CPU seconds, wall seconds) per image over `n` images."""
    maps = np.zeros((2, *shape[1:]), np.float32)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        raw, image = pool.submit(prepare, shape, parcels).result()
        load(image)  # what the network reads
        out = maps if parcels is None else (slots or parcels).put(maps)
        pool.submit(finish, raw, image, out).result()
        if slots is not None:
            slots.release(out)
    return (time.process_time() - cpu) / n, (time.perf_counter() - wall) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, nargs=2, default=(1024, 1024))
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--images", type=int, default=40)
    args = parser.parse_args()
    shape = (args.channels, *args.size)
    what = "x".join(map(str, shape))
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool, handoff(True) as parcels:
        pool.submit(prepare, (1, 8, 8), None).result()  # the worker started
        ways = {
            "pickled through pipes": (None, None),
            f"new files in {parcels.folder}": (parcels, None),
            "the same, the maps in reused files (now)": (parcels, Slots(parcels, keep=2)),
        }
        for name, how in ways.items():
            run(pool, shape, 3, *how)  # warm up
            cpu, wall = run(pool, shape, args.images, *how)
            print(
                f"{name}: {cpu * 1e3:.1f} ms of this process's CPU per image, "
                f"{wall * 1e3:.1f} ms per round trip ({what} image)"
            )


if __name__ == "__main__":
    main()
