"""Arrays handed between `segment_folder`'s processes as .npy files in a RAM-backed folder
instead of pickled through the worker pool's pipes.

Per 1024x1024 image the network's process would receive the raw and normalised image from the
worker that prepared it and send both plus the output maps to the worker that finishes it:
about 20 MB through pipes, pickled and copied several times under the GIL: 33-63 ms of that
process's CPU on a 2-core machine (benchmarks/handoff_speed.py), enough to cap a GPU machine
well under 100 images a second. A file in ``/dev/shm`` is written once and read once, at
memory speed: 6-8 ms. Most of that was the kernel allocating and zeroing a new file's pages
(about 4 ms for the 8 MB of maps), so the maps, which the network's process writes, go into
`Slots`: files it keeps mapped and reuses, a 0.3 ms copy. Without workers the arrays stay where
they are (`Handoff` with no folder).
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


class Slots:
    """Files of a `Handoff`'s folder that one process writes arrays into again and again,
    through mappings it keeps open: a slot is busy from `put` until `release` (its reader is
    done with it), then idle until a `put` of an array of its shape and dtype takes it again.
    At most `keep` idle slots are kept (the oldest others removed), so images of many sizes do
    not pile up files. Readers `load` a slot's path; they never take it."""

    def __init__(self, parcels: Handoff, keep: int) -> None:
        self.folder, self.keep = parcels.folder, keep
        self.idle: dict[str, np.memmap] = {}  # path -> its mapping, oldest first
        self.busy: dict[str, np.memmap] = {}

    def array(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        """A writable array of `shape` and `dtype` to fill in place and hand over with
        `parcel` (the network writes its maps straight into it, no copy): an idle slot's
        mapping or a new slot's, busy from now until `release`; without a folder a new array."""
        if self.folder is None:
            return np.empty(shape, dtype)
        shape, dtype = tuple(shape), np.dtype(dtype)
        fits = (p for p, m in self.idle.items() if (m.shape, m.dtype) == (shape, dtype))
        path = next(fits, None)
        if path is None:
            path = os.path.join(self.folder, f"slot-{uuid.uuid4().hex}.npy")
            mapping = np.lib.format.open_memmap(path, "w+", dtype, shape)
        else:
            mapping = self.idle.pop(path)
        self.busy[path] = mapping
        return mapping

    def parcel(self, array: np.ndarray) -> Parcel:
        """The parcel of an array `array` gave: its slot's path (itself without a folder)."""
        if self.folder is None:
            return array
        path = next((p for p, m in self.busy.items() if m is array), None)
        if path is None:
            raise ValueError("not an array of these slots: take one with Slots.array")
        return path

    def put(self, array: np.ndarray) -> Parcel:
        """`array` as a parcel: itself without a folder, else the path of a slot holding a copy
        of it, busy until `release`."""
        if self.folder is None:
            return array
        slot = self.array(array.shape, array.dtype)
        slot[...] = array
        return self.parcel(slot)

    def release(self, parcel: Parcel) -> None:
        """Make a slot `put` returned idle again (its reader is done); nothing for an array."""
        if not isinstance(parcel, str):
            return
        self.idle[parcel] = self.busy.pop(parcel)
        while len(self.idle) > self.keep:
            oldest = next(iter(self.idle))
            del self.idle[oldest]  # its mapping goes with the last reference
            os.unlink(oldest)


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
