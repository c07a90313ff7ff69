"""Arrays handed between segment_folder's processes as files (pipeline.segment.handoff)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.segment import handoff as ho


@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.uint16).reshape(2, 3, 4),
        np.linspace(-1, 1, 30, dtype=np.float32).reshape(1, 5, 6),
        np.eye(4, dtype=bool),
    ],
)
def test_a_parcel_holds_its_array_exactly_until_its_last_reader_takes_it(array):
    with ho.handoff(True) as parcels:
        parcel = parcels.put(array)
        assert isinstance(parcel, str) and Path(parcel).parent == Path(parcels.folder)
        again = ho.load(parcel)
        assert again.dtype == array.dtype and np.array_equal(again, array)
        assert Path(parcel).is_file()  # a load keeps it for the next reader
        taken = ho.take(parcel)
        assert np.array_equal(taken, array) and not Path(parcel).exists()
        skipped = parcels.put(array)
        ho.discard(skipped)
        assert os.listdir(parcels.folder) == []


def test_without_processes_arrays_stay_in_memory():
    array = np.ones((2, 3), np.float32)
    with ho.handoff(False) as parcels:
        assert parcels.folder is None
        assert parcels.put(array) is array and ho.take(array) is array
        ho.discard(array)


def test_the_folder_goes_with_what_is_left_in_it_even_when_the_run_fails():
    with pytest.raises(RuntimeError, match="the run failed"):
        with ho.handoff(True) as parcels:
            folder = Path(parcels.folder)
            parcels.put(np.zeros((8, 8)))
            raise RuntimeError("the run failed")
    assert not folder.exists()


def test_a_short_ram_folder_is_passed_over_for_the_temp_dir(monkeypatch):
    monkeypatch.setattr(ho, "RAM_FREE_BYTES", 2**62)  # more than any /dev/shm has free
    with ho.handoff(True) as parcels:
        assert Path(parcels.folder).parent == Path(tempfile.gettempdir())


def test_objects_are_not_parcels_and_files_never_unpickle(tmp_path):
    with ho.handoff(True) as parcels, pytest.raises(ValueError, match="pickle"):
        parcels.put(np.array([{"a": 1}], dtype=object))
    crafted = tmp_path / "x.npy"
    np.save(crafted, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        ho.load(str(crafted))


def test_slots_are_reused_by_arrays_of_their_shape_and_only_when_released():
    a, b = np.full((2, 4, 5), 1, np.float32), np.full((2, 4, 5), 2, np.float32)
    with ho.handoff(True) as parcels:
        slots = ho.Slots(parcels, keep=2)
        first, second = slots.put(a), slots.put(b)
        assert first != second  # the first is busy until released
        assert np.array_equal(ho.load(first), a) and np.array_equal(ho.load(second), b)
        slots.release(first)
        again = slots.put(b)
        assert again == first and np.array_equal(ho.load(first), b)  # rewritten in place
        slots.release(again)
        other = slots.put(np.zeros((3, 3), np.uint16))  # another shape: a new slot
        assert other not in (first, second) and Path(first).is_file()
        slots.release(second)
        slots.release(other)  # three idle, two kept: the oldest goes
        assert not Path(first).exists() and sorted(slots.idle) == sorted([second, other])
        assert sorted(os.listdir(parcels.folder)) == sorted(Path(p).name for p in slots.idle)
        with pytest.raises(ValueError, match="objects"):  # a slot never holds a pickle either
            slots.put(np.array([{"a": 1}], dtype=object))
    with ho.handoff(False) as parcels:
        assert ho.Slots(parcels, keep=1).put(a) is a


def test_a_slot_is_filled_in_place_and_handed_over_as_its_path():
    with ho.handoff(True) as parcels:
        slots = ho.Slots(parcels, keep=1)
        into = slots.array((2, 3, 4), np.float32)
        into[...] = 7  # as the network's maps are copied from the device into it
        path = slots.parcel(into)
        assert np.array_equal(ho.load(path), np.full((2, 3, 4), 7, np.float32))
        assert slots.array((2, 3, 4), np.float32) is not into  # busy until released
        slots.release(path)
        assert slots.array((2, 3, 4), np.float32) is into  # idle again: reused
        with pytest.raises(ValueError, match="Slots.array"):
            slots.parcel(np.zeros((2, 3, 4), np.float32))  # not one of its arrays
    with ho.handoff(False) as parcels:
        slots = ho.Slots(parcels, keep=1)
        plain = slots.array((2, 3), np.uint8)
        assert plain.shape == (2, 3) and slots.parcel(plain) is plain
