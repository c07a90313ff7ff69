"""JSON documents: read with an error that names the file and the fix, written atomically.

Light (no numerical library), so the run folder's code and the DAG files' imports can use it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.atomic import atomic_path
from pipeline.errors import DataError


def read_json(path: str | Path, what: str, fix: str) -> Any:
    """The JSON document at `path`; DataError naming the file, `what` it is, the error and the
    `fix` where it cannot be read or parsed (a missing file included)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable {what} ({type(exc).__name__}: {exc}); {fix}") from exc


def write_json(path: str | Path, obj: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    return Path(path)
