"""Facts every stage shares: label sets, the label convention, split names, file-safe names, and
the shape of a stage's result (a small JSON-able record).

Label convention everywhere: (H, W) integer instance label images, 0 = background, 1..N =
objects (ids need not be sequential). A dataset may carry two label sets per field: ``cells``
and ``nuclei``; ``data.target`` picks the one to learn and score.
"""

import dataclasses
import getpass
import os
import re
import socket
from datetime import UTC, datetime

LABEL_SETS = ("cells", "nuclei")
LABEL_CONVENTION = "uint16 instance labels, 0 = background, 1..N = objects"
SPLITS = ("train", "val", "test")  # assigned by field at ingest
UNLABELLED = "unlabelled"  # the split of fields without target labels (prediction only)
SPLIT_VALUES = (*SPLITS, UNLABELLED)


def safe_name(name: str) -> str:
    """A file-name-safe form of a field id or run id (runs of other characters become "_")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


class Record:
    """Mixin for the dataclasses stages return (paths, ids, counts, metrics; never arrays):
    ``to_dict`` gives the JSON-able dict that goes to the CLI, XCom and the run's state files."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


def now() -> str:
    """The current UTC time, ISO 8601 to the second (written into claims, locks, histories)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def who() -> str:
    """``user@host (pid N)``: who holds a lock, claimed a version or moved an alias."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} (pid {os.getpid()})"
