"""The run folder: every artifact of one pipeline run lives under ``<paths.runs_dir>/<run_id>/``.

This is the only module that spells the layout::

    state/<stage>.json          each stage's output (what the next stage reads; the CLI's resume)
    validate/                   result.json, data_docs/
    preprocess/                 index.json, <split>/<field>.npz
    predictions/<method>/       <field>.tif label images of every method on the test split
    train/model/                the best epoch's model folder (weights.safetensors, card.json)
    train/checkpoint.pt         the last epoch's training state (to resume a killed training)
    evaluate/                   metrics, figures, overlays, report.html
    register/                   the promotion gate's re-scoring of production (when needed)
    registered.json             where the run's model was registered, its aliases, the decision
    .lock, .lock-<stage>        held by the processes working on the run (`RunDir.lock`)
    wandb/                      offline experiment tracking

Tasks are idempotent: re-running a stage with the same inputs rewrites the same files.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.conventions import now, safe_name, who
from pipeline.errors import ConfigError
from pipeline.jsonio import read_json

_HELD: set[str] = set()  # run locks this process holds


class RunInUse(ConfigError):
    """Another process works on this run id."""


class _In:
    """A read-only attribute of RunDir: the path ``<run folder>/<parts...>``."""

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    def __get__(self, run: RunDir, owner: type | None = None) -> Path:
        return run.root.joinpath(*self.parts)


@dataclass(frozen=True)
class RunDir:
    root: Path

    @classmethod
    def create(cls, runs_dir: str | Path, run_id: str) -> RunDir:
        """The folder of run `run_id` under `runs_dir`, created if missing."""
        root = Path(runs_dir) / safe_name(run_id)
        root.mkdir(parents=True, exist_ok=True)
        return cls(root)

    @property
    def run_id(self) -> str:
        return self.root.name

    def state(self, stage: str) -> Path:
        return self.root / "state" / f"{stage}.json"

    def read_state(self, stage: str) -> dict | None:
        """The recorded output of `stage`, or None if it has not run in this folder."""
        path = self.state(stage)
        if not path.is_file():
            return None
        return read_json(path, "stage state", "delete it and re-run that stage")

    # Folders and files of the run (see the module docstring).
    validate = _In("validate")
    preprocess = _In("preprocess")
    predictions_root = _In("predictions")
    train = _In("train")
    model = _In("train", "model")
    checkpoint = _In("train", "checkpoint.pt")
    evaluate = _In("evaluate")
    register = _In("register")
    registered = _In("registered.json")
    lock_file = _In(".lock")

    @contextmanager
    def lock(self, stage: str, shared: bool = False) -> Iterator[None]:
        """Hold the run while `stage` works on it; RunInUse at once when another process
        holds it. The run lock (``.lock``) is exclusive, or `shared` by the tasks of one
        orchestrated run (an Airflow DAG run's parallel branches); the stage lock
        (``.lock-<stage>``) is always exclusive, so one stage never runs twice at once.
        Re-entrant within a process (``cellseg run`` holds the run for all its stages);
        released when the block ends or the process dies (OS file locks)."""
        with ExitStack() as stack:
            stack.enter_context(_flock(self.lock_file, self, stage, shared))
            stack.enter_context(_flock(self.root / f".lock-{safe_name(stage)}", self, stage))
            yield

    def predictions(self, method: str) -> Path:
        """Label images of `method` on the test split."""
        return self.predictions_root / method


@contextmanager
def _flock(path: Path, run: RunDir, what: str, shared: bool = False) -> Iterator[None]:
    key = str(path.resolve())
    if key in _HELD:
        yield
        return
    fh = open(path, "a+")
    try:
        fcntl.flock(fh, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "other processes (e.g. the tasks of an Airflow DAG run)"
        fh.close()
        raise RunInUse(
            f"run {run.run_id} ({run.root}) is in use by {holder}; wait for it to finish or "
            "pass another --run-id"
        ) from None
    try:
        if not shared:
            fh.truncate(0)
            fh.write(f"{who()}, {what}, since {now()}")
            fh.flush()
        _HELD.add(key)
        yield
    finally:
        _HELD.discard(key)
        if not shared:
            fh.truncate(0)
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()
