import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from pipeline.atomic import atomic_path


def test_folder_swap_keeps_old_version_on_error(tmp_path):
    final = tmp_path / "version"
    with atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("new, half written")
        raise RuntimeError("killed")
    assert (final / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["version"]  # no temporary leftovers


def test_crash_between_the_two_renames_is_repaired(tmp_path):
    final = tmp_path / "version"
    with atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("old")
    # Simulate a crash after `final` was moved aside and before the new one took its place.
    aside = tmp_path / ".atomic" / "version.4194305.x.tmp"  # a pid over Linux's limit: dead
    aside.mkdir(parents=True)
    final.rename(aside / "previous")
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:  # the next write to the path
        assert (final / "a.txt").read_text() == "old"  # ... has put the old version back first
        raise RuntimeError("and fails itself")
    assert (final / "a.txt").read_text() == "old"
    assert not (aside / "previous").exists()


def test_a_live_writers_folder_swap_is_left_to_it(tmp_path):
    # a writer alive between its two renames (this process's pid) has its previous version
    # aside: a second write to the same path must not put it back under the first one's feet
    final = tmp_path / "version"
    aside = tmp_path / ".atomic" / f"version.{os.getpid()}.x.tmp"
    (aside / "previous").mkdir(parents=True)
    (aside / "previous" / "a.txt").write_text("old")
    with atomic_path(final) as tmp:
        assert not final.exists()
        tmp.mkdir()
        (tmp / "a.txt").write_text("new")
    assert (final / "a.txt").read_text() == "new"
    assert (aside / "previous" / "a.txt").read_text() == "old"  # still the live writer's


def _write_many(folder: str, writer: int, count: int) -> list[str]:
    for i in range(count):
        with atomic_path(Path(folder) / f"{writer}_{i}.txt") as tmp:
            tmp.write_text(f"{writer} {i}")
    return [f"{writer}_{i}.txt" for i in range(count)]


def test_processes_writing_into_one_folder_never_trip_over_each_others_temporaries(tmp_path):
    # each write makes the shared temporaries folder if it is missing and removes it once empty:
    # another process's listing or mkdir must survive it vanishing or reappearing in between
    # (this test failed 4 runs in 4 before: FileNotFoundError / FileExistsError in io.py)
    with ProcessPoolExecutor(4) as pool:
        jobs = [pool.submit(_write_many, str(tmp_path), writer, 250) for writer in range(4)]
        written = sorted(name for job in jobs for name in job.result())
    assert sorted(p.name for p in tmp_path.iterdir()) == written  # and no temporaries left
    assert (tmp_path / "3_249.txt").read_text() == "3 249"
