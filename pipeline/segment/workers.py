"""The post-processing processes of `pipeline.segment.batch.segment_folder`: spawned fresh,
one thread each, at a lower priority than the network's process, started without the parent's
main script; and `submit`, which runs a job in one of them or, without them, here."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager

WORKER_NICE = 10  # post-processing workers yield the cores to the network's process


def default_workers(device) -> int:
    """Post-processing processes for `segment_folder`: on a GPU one per CPU core but one (the
    network's feeder); on a CPU none, as the network already keeps every core busy."""
    return max(1, (os.cpu_count() or 1) - 1) if device.type == "cuda" else 0


@contextmanager
def processes(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """`workers` fresh processes (spawned: no copy of the parent's threads or GPU state), each
    on one thread (`workers` of them already share the cores), or None for 0. Meanwhile this
    process's torch threads are cut to the cores the workers leave: with more threads than free
    cores each of its parallel operations waits for a busy core (a near-free network took 46 ms
    an image instead of 5.6 beside one busy worker on 2 cores)."""
    if workers <= 0:
        yield None
        return
    import torch

    threads = torch.get_num_threads()
    spawn = multiprocessing.get_context("spawn")
    try:
        torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 1) - workers)))
        with ProcessPoolExecutor(workers, mp_context=spawn, initializer=_worker_start) as pool:
            with _main_script_hidden():  # each submit starts a worker while none is idle
                for _ in range(workers):
                    pool.submit(os.getpid)
            yield pool
    finally:
        torch.set_num_threads(threads)


@contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Processes spawned inside do not run this process's main script again (spawn imports it
    in each child, for functions defined there): the workers run `pipeline` functions alone, and
    an Airflow task's or a benchmark's main script imports torch and more, seconds per worker."""
    main = sys.modules["__main__"]
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _worker_start() -> None:
    """A worker's start: one thread for OpenCV and for torch (imported only if a field needs it:
    `pipeline.segment.fields` does not), and a lower priority than the network's process
    (WORKER_NICE), which feeds the GPU one image at a time and so sets the pace: among workers
    that keep every core busy it waits for a core at each step (on an H200's 16 cores beside 15
    workers its network step took 11-14 ms an image, 6-9 with the cores idle; how much of that
    the priority wins back was not measured apart)."""
    import cv2

    os.nice(WORKER_NICE)
    os.environ["OMP_NUM_THREADS"] = "1"  # read by torch when it is imported
    if "torch" in sys.modules:  # imported already: by a main script spawn ran again here
        sys.modules["torch"].set_num_threads(1)
    cv2.setNumThreads(1)  # OpenCV's filters (pipeline.segment.filters)


def submit(pool: ProcessPoolExecutor | None, fn: Callable, *args) -> Future:
    if pool is not None:
        return pool.submit(fn, *args)
    done: Future = Future()
    done.set_result(fn(*args))  # inline: an error is raised here, at once
    return done
