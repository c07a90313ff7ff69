"""A config field with its validation rule in ``metadata`` (see `pipeline.config.sections`)."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def rule(default: Any = None, *, factory: Any = None, **metadata: Any) -> Any:
    """A dataclass field carrying its validation rule (see the module docstring)."""
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def positive(default: Any) -> Any:
    return rule(default, min=0, exclusive_min=True)


def fraction(default: float) -> Any:  # [0, 1)
    return rule(default, min=0.0, max=1.0, exclusive_max=True)
