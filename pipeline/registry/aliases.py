"""Aliases (``production``, ``staging``, any name): movable names for versions, with history.

An alias is an append-only log under ``<model_name>/aliases/<alias>/``: entry ``000001.json``,
``000002.json``, ... each saying which version it points to, who moved it, when and why. The
alias's value is its newest entry. Moving writes the next entry with `Store.put_new`, so a move
is one atomic write, two concurrent moves can never both win (the loser is told to retry), and
the history is never rewritten. Rollback is a move back to an earlier version, logged as such.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from pipeline.conventions import now, who
from pipeline.errors import ConfigError, DataError
from pipeline.registry.versions import version_name

if TYPE_CHECKING:
    from pipeline.registry.versions import Registry

log = logging.getLogger(__name__)
PRODUCTION, STAGING = "production", "staging"
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def _check_name(alias: str) -> str:
    if not _NAME.match(alias):
        raise ConfigError(
            f"alias {alias!r}: use lower-case letters, digits, '-' or '_', starting with a letter"
        )
    return alias


def _prefix(reg: Registry, alias: str) -> str:
    return f"{reg.name}/aliases/{_check_name(alias)}"


def aliases(reg: Registry) -> list[str]:
    """Every alias name that has a history."""
    return sorted({k.split("/")[2] for k in reg.store.keys(f"{reg.name}/aliases")})


def history(reg: Registry, alias: str) -> list[dict[str, Any]]:
    """Every move of `alias`, oldest first."""
    entries = []
    for key in reg.store.keys(_prefix(reg, alias)):
        try:
            entries.append(json.loads(reg.store.read(key)))
        except ValueError as exc:
            raise DataError(f"{reg.store.uri}/{key}: unreadable alias entry ({exc})") from exc
    return sorted(entries, key=lambda e: e["seq"])


def current(reg: Registry, alias: str) -> dict[str, Any] | None:
    """The newest entry of `alias` (its ``version``), or None if it was never set."""
    entries = history(reg, alias)
    return entries[-1] if entries else None


def move(reg: Registry, alias: str, version: int, action: str, reason: str) -> dict[str, Any]:
    """Point `alias` at the complete `version`; returns the new history entry. ConfigError when
    another process moved the alias at the same moment (nothing changed: retry)."""
    manifest = reg.manifest(version)  # refuses a missing or incomplete version
    last = current(reg, alias)
    entry = {
        "alias": alias,
        "seq": (last["seq"] + 1) if last else 1,
        "version": version,
        "model_id": manifest["model_id"],
        "previous_version": last["version"] if last else None,
        "action": action,
        "reason": reason,
        "by": who(),
        "at": now(),
    }
    key = f"{_prefix(reg, alias)}/{entry['seq']:06d}.json"
    if not reg.store.put_new(key, json.dumps(entry, indent=2).encode()):
        raise ConfigError(
            f"{reg.store.uri}/{key}: alias {alias!r} was moved by another process just now; "
            "nothing changed, run the command again"
        )
    log.info("%s -> %s (%s: %s)", alias, version_name(version), action, reason)
    return entry


def rollback(reg: Registry, alias: str, to: int | None = None) -> dict[str, Any]:
    """Move `alias` back: to version `to`, or else to the version it pointed at before the
    current one."""
    entries = history(reg, alias)
    if not entries:
        raise ConfigError(f"alias {alias!r} of {reg.name} was never set; nothing to roll back")
    now_at = entries[-1]["version"]
    if to is None:
        earlier = [e["version"] for e in entries if e["version"] != now_at]
        if not earlier:
            raise ConfigError(
                f"alias {alias!r} has only ever pointed at {version_name(now_at)}; "
                "pass --to VERSION"
            )
        to = earlier[-1]
    return move(reg, alias, to, "rollback", f"rolled back from {version_name(now_at)}")
