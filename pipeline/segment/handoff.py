"""Arrays handed between `segment_folder`'s processes as .npy files in a RAM-backed folder
instead of pickled through the worker pool's pipes.

Per 1024x1024 image the network's process would receive the raw and normalised image from the
worker that prepared it and send both plus the output maps to the worker that finishes it:
about 20 MB through pipes, pickled and copied several times under the GIL: 33-63 ms of that
process's CPU on a 2-core machine (benchmarks/handoff_speed.py), enough to cap a GPU machine
well under 100 images a second. A file in ``/dev/shm`` is written once and read once, at
memory speed: 6-8 ms. Without workers the arrays stay where they are (`Handoff` with no
folder).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RAM_FOLDER = Path("/dev/shm")
RAM_FREE_BYTES = 4 * 2**30  # use the RAM folder only with this much free; else the temp dir

Parcel = np.ndarray | str  # an array, or the path of the .npy file that holds it


@dataclass(frozen=True)
class Handoff:
    """Where parcels go: `folder` (a path any of the run's processes can read), or None to
    keep arrays in memory (one process)."""

    folder: str | None = None

    def put(self, array: np.ndarray) -> Parcel:
        """`array` as a parcel: itself without a folder, else a new .npy file's path."""
        if self.folder is None:
            return array
        path = os.path.join(self.folder, f"{uuid.uuid4().hex}.npy")
        np.save(path, array, allow_pickle=False)
        return path


def load(parcel: Parcel) -> np.ndarray:
    """The array a parcel holds (its file kept: another process takes it later)."""
    return parcel if isinstance(parcel, np.ndarray) else np.load(parcel, allow_pickle=False)


def take(parcel: Parcel) -> np.ndarray:
    """The array a parcel holds, its file removed (the parcel's last reader)."""
    array = load(parcel)
    if isinstance(parcel, str):
        os.unlink(parcel)
    return array


def discard(parcel: Parcel) -> None:
    """Remove a parcel no one will read (an image skipped after it was prepared)."""
    if isinstance(parcel, str):
        os.unlink(parcel)


@contextmanager
def handoff(processes: bool) -> Iterator[Handoff]:
    """A `Handoff` for one run: with `processes`, a fresh folder in ``/dev/shm`` (or the temp
    dir when that lacks RAM_FREE_BYTES), removed with whatever is left in it when the run
    ends, however it ends; without, none."""
    if not processes:
        yield Handoff()
        return
    ram = RAM_FOLDER.is_dir() and shutil.disk_usage(RAM_FOLDER).free >= RAM_FREE_BYTES
    folder = tempfile.mkdtemp(prefix="cellseg-handoff-", dir=RAM_FOLDER if ram else None)
    try:
        yield Handoff(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
