"""Registered versions: immutable, complete or invisible, verified on every load.

Layout under ``registry.uri`` (a local folder or ``s3://bucket/prefix``; `store.Store`)::

    <model_name>/v0001/claim.json           who took the number (written first, exclusively)
    <model_name>/v0001/weights.safetensors  the model folder (pipeline.segment.artifact) ...
    <model_name>/v0001/card.json            ... the typed card inference reads
    <model_name>/v0001/metadata.json        metrics, dataset, lineage (pipeline.registry.card)
    <model_name>/v0001/MODEL_CARD.md        the human-readable card
    <model_name>/v0001/manifest.json        sha256 of every file above, written LAST
    <model_name>/aliases/<alias>/000001.json  alias history (pipeline.registry.aliases)

A version exists for readers only once its manifest does, so nobody ever sees half of one; a
registration killed part-way leaves an invisible, numbered claim (``models list --all``). Every
object is written with `Store.put_new`, so concurrent registrations never share a number and
no file of a version is ever replaced. Loading checks every file against the manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import RegistryConfig
from pipeline.conventions import Record, now, who
from pipeline.errors import ConfigError, DataError
from pipeline.registry.store import Store, open_store
from pipeline.segment.artifact import CARD, WEIGHTS
from pipeline.storage import is_s3

log = logging.getLogger(__name__)
CLAIM, META, README, MANIFEST = "claim.json", "metadata.json", "MODEL_CARD.md", "manifest.json"
FILES = (WEIGHTS, CARD, META, README)  # what a manifest lists
MAX_ATTEMPTS = 50
_VERSION = re.compile(r"^v(\d{4,})$")


@dataclass
class RegisteredModel(Record):
    uri: str
    version: int
    model_id: str


def version_name(v: int) -> str:
    return f"v{v:04d}"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Registry:
    """The versions and aliases of one model name in one store."""

    def __init__(self, cfg: RegistryConfig, store: Store | None = None) -> None:
        self.cfg, self.name = cfg, cfg.model_name
        self.store = store or open_store(cfg.uri, cfg.s3_endpoint_url)

    def key(self, version: int, file: str) -> str:
        return f"{self.name}/{version_name(version)}/{file}"

    def uri(self, version: int) -> str:
        return f"{self.store.uri.rstrip('/')}/{self.name}/{version_name(version)}"

    def _files_by_version(self) -> dict[int, set[str]]:
        out: dict[int, set[str]] = {}
        for k in self.store.keys(self.name):
            parts = k.split("/")
            if len(parts) == 3 and (m := _VERSION.match(parts[1])):
                out.setdefault(int(m.group(1)), set()).add(parts[2])
        return out

    def versions(self, incomplete: bool = False) -> list[int]:
        """Complete versions (with a manifest), ascending; with `incomplete`, only the claimed
        numbers that have none (registrations that died part-way)."""
        found = self._files_by_version()
        return sorted(v for v, files in found.items() if (MANIFEST in files) != incomplete)

    def register(self, model: Path, metadata: dict[str, Any], readme: str) -> RegisteredModel:
        """Publish the model folder `model` with `metadata` and the human-readable card as the
        next version. RegistryUnavailable when the store fails: nothing becomes visible."""
        for _ in range(MAX_ATTEMPTS):
            version = max(self._files_by_version(), default=0) + 1
            claim = {"by": who(), "at": now(), "run_id": metadata.get("run_id")}
            if self.store.put_new(self.key(version, CLAIM), json.dumps(claim).encode()):
                break
        else:
            raise RuntimeError(f"{self.store.uri}: no free version after {MAX_ATTEMPTS} tries")
        meta = {**metadata, "model_name": self.name, "version": version}
        files = {
            WEIGHTS: (model / WEIGHTS).read_bytes(),
            CARD: (model / CARD).read_bytes(),
            META: json.dumps(meta, indent=2, sort_keys=True, default=str).encode(),
            README: readme.replace("{version}", version_name(version)).encode(),
        }
        for name, data in files.items():
            if not self.store.put_new(self.key(version, name), data):
                raise RuntimeError(f"{self.uri(version)}/{name} exists although we claimed it")
        manifest = {
            "model_name": self.name,
            "version": version,
            "model_id": _sha(files[WEIGHTS]),
            "published_at": now(),
            "sha256": {name: _sha(data) for name, data in files.items()},
        }
        if not self.store.put_new(self.key(version, MANIFEST), json.dumps(manifest).encode()):
            raise RuntimeError(f"{self.uri(version)}/{MANIFEST} exists although we claimed it")
        log.info("registered %s %s at %s", self.name, version_name(version), self.uri(version))
        return RegisteredModel(self.uri(version), version, manifest["model_id"])

    def manifest(self, version: int) -> dict[str, Any]:
        where = f"{self.uri(version)}/{MANIFEST}"
        if version not in self.versions():
            listed = ", ".join(map(version_name, self.versions())) or "none"
            raise DataError(f"{where}: no complete version {version} (versions: {listed})")
        try:
            manifest = json.loads(self.store.read(self.key(version, MANIFEST)))
            listed = set(manifest["sha256"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{where}: unreadable ({exc}); the version is corrupt") from exc
        if listed != set(FILES):
            raise DataError(f"{where}: lists {sorted(listed)}, not {list(FILES)}; corrupt")
        return manifest

    def read(self, version: int, file: str) -> bytes:
        """One file of a complete version, checked against its manifest."""
        expected = self.manifest(version)["sha256"][file]
        data = self.store.read(self.key(version, file))
        if _sha(data) != expected:
            raise DataError(_tampered(f"{self.uri(version)}/{file}"))
        return data

    def metadata(self, version: int) -> dict[str, Any]:
        return json.loads(self.read(version, META))

    def fetch(self, version: int, dest: str | Path) -> Path:
        """Copy a complete version into the folder `dest` and verify every file; returns `dest`
        (a model folder that `pipeline.segment.artifact.load_model` reads)."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / MANIFEST).write_bytes(json.dumps(self.manifest(version)).encode())
        for name in FILES:
            self.store.download(self.key(version, name), dest / name)
        return verify_version(dest, self.uri(version))

    def resolve(self, ref: str | int) -> int:
        """A version number from ``3``, ``v0003`` or an alias name (``production``)."""
        from pipeline.registry.aliases import current

        text = str(ref).strip()
        if text.isdigit() or _VERSION.match(text):
            return int(text.lstrip("v"))
        entry = current(self, text)
        if entry is None:
            raise ConfigError(
                f"{self.store.uri}/{self.name}: no version or alias {text!r}; "
                "`cellseg models list` shows both"
            )
        return int(entry["version"])


def _tampered(where: str) -> str:
    return (
        f"{where}: does not match the sha256 in its {MANIFEST} (tampered or corrupt); not "
        "loaded. Fetch it again or register the model again"
    )


def verify_version(folder: Path, source: str) -> Path:
    """Check every file of a registered version copied into `folder` against its manifest;
    DataError naming the file when one is missing or changed. Returns `folder`."""
    try:
        sums = json.loads((folder / MANIFEST).read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{source}: no readable {MANIFEST} ({exc}); not a complete version"
        ) from exc
    for name in FILES:
        path = folder / name
        if not path.is_file():
            raise DataError(f"{source}/{name}: missing; the version is incomplete")
        if _sha(path.read_bytes()) != sums.get(name):
            raise DataError(_tampered(f"{source}/{name}"))
    return folder


def is_version_folder(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def fetch_model(uri: str, dest: str, endpoint_url: str | None = None) -> Path:
    """Copy the registered version at `uri` (``.../<model_name>/v0003``, a folder or s3://) to
    the folder `dest`, verified; returns `dest`."""
    root, name, vname = uri.rstrip("/").rsplit("/", 2)
    if not _VERSION.match(vname) or not name:
        raise ConfigError(f"{uri}: not a registered version (expected .../<model_name>/v0001)")
    cfg = RegistryConfig(uri=root, model_name=name, s3_endpoint_url=endpoint_url)
    store = open_store(root if is_s3(root) else str(Path(root)), endpoint_url)
    return Registry(cfg, store).fetch(int(vname[1:]), dest)
