"""Model registry stage: versioned, never-overwritten models in a folder or an S3 bucket.

Layout under ``registry.uri`` (a local folder or ``s3://bucket/prefix``)::

    <model_name>/v0001/weights.safetensors, card.json   the model folder (pipeline.segment.artifact)
    <model_name>/v0001/metadata.json    metrics, dataset id, run id, config, model id, sha256s

Versions are claimed exclusively: locally by renaming a complete temporary folder onto a fresh
name (fails if it exists), on S3 with conditional writes (``IfNoneMatch='*'``), so two runs
registering at once get different versions and an existing version is never replaced.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import RegistryConfig
from pipeline.conventions import Record
from pipeline.errors import DataError
from pipeline.io import sha256_file
from pipeline.segment.artifact import CARD, WEIGHTS, model_folder, model_id, read_card
from pipeline.storage import is_s3, s3_client, split_s3

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 50


@dataclass
class RegisteredModel(Record):
    uri: str
    version: int
    card: dict[str, Any]


def _version_name(v: int) -> str:
    return f"v{v:04d}"


META = "metadata.json"


def _register_local(root: Path, model: Path, card: dict) -> tuple[str, int]:
    root.mkdir(parents=True, exist_ok=True)
    for _ in range(MAX_ATTEMPTS):
        existing = [int(p.name[1:]) for p in root.glob("v[0-9]*") if p.name[1:].isdigit()]
        version = max(existing, default=0) + 1
        tmp = Path(tempfile.mkdtemp(prefix=".register-", dir=root))
        try:
            for name in (WEIGHTS, CARD):
                shutil.copy2(model / name, tmp / name)
            (tmp / META).write_text(json.dumps({**card, "version": version}, indent=2))
            final = root / _version_name(version)
            try:  # rename refuses a non-empty target: an existing version is never replaced
                os.rename(tmp, final)
            except OSError:
                continue  # another run claimed this version first; try the next one
            return str(final), version
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    raise RuntimeError(f"could not claim a new version under {root} after {MAX_ATTEMPTS} tries")


def _register_s3(uri: str, model: Path, card: dict, endpoint_url: str | None) -> tuple[str, int]:
    from botocore.exceptions import ClientError

    client = s3_client(endpoint_url)
    bucket, prefix = split_s3(uri, "registry.uri")
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
            raise
        log.info("creating bucket %s for the registry", bucket)
        client.create_bucket(Bucket=bucket)
    listing = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
    existing = {
        int(k.split("/")[-2][1:])
        for page in listing
        for k in (o["Key"] for o in page.get("Contents", []))
        if k.endswith(f"/{META}")
    }
    version = max(existing, default=0) + 1
    for _ in range(MAX_ATTEMPTS):
        key = f"{prefix}/{_version_name(version)}"
        body = json.dumps({**card, "version": version}, indent=2).encode()
        try:  # the metadata is the claim: it is written first and only if absent
            client.put_object(Bucket=bucket, Key=f"{key}/{META}", Body=body, IfNoneMatch="*")
        except ClientError as exc:
            if exc.response["Error"]["Code"] in (
                "PreconditionFailed",
                "412",
                "ConditionalRequestConflict",
            ):
                version += 1
                continue
            raise
        try:
            for name in (WEIGHTS, CARD):
                with open(model / name, "rb") as fh:
                    client.put_object(Bucket=bucket, Key=f"{key}/{name}", Body=fh, IfNoneMatch="*")
        except Exception:
            # Release the claim so a retry can use this version; no metadata without a model.
            client.delete_object(Bucket=bucket, Key=f"{key}/{META}")
            raise
        return f"s3://{bucket}/{key}", version
    raise RuntimeError(f"could not claim a new version under {uri} after {MAX_ATTEMPTS} tries")


def check_registrable(
    model: Path, evaluated_id: str | None, metrics: dict, cfg: RegistryConfig
) -> str:
    """The model id of `model` after the checks that keep a bad model out of the registry:
    its weights are the ones evaluated (`evaluated_id`), all finite, and its own instances
    (``metrics["test"]["unet"]``) reach ``cfg.min_f1``. DataError otherwise."""
    from pipeline.segment.artifact import load_weights

    current = model_id(model)
    if evaluated_id is not None and current != evaluated_id:
        raise DataError(
            f"{model}: its weights (sha256 {current[:12]}) are not the ones evaluated "
            f"({evaluated_id[:12]}); the model changed after evaluation: re-run evaluate"
        )
    bad = [
        k
        for k, v in load_weights(model).items()
        if v.is_floating_point() and not v.isfinite().all()
    ]
    if bad:
        raise DataError(
            f"{model}: non-finite weights in {bad[:3]}; not registered (lower train.lr)"
        )
    f1 = metrics.get("test", {}).get("unet", {}).get("f1")
    if f1 is not None and f1 < cfg.min_f1:
        raise DataError(
            f"{model}: test F1 of the network's own instances {f1:.3f} is below "
            f"registry.min_f1={cfg.min_f1}; not registered"
        )
    return current


def register_model(
    model_dir: str,
    cfg: RegistryConfig,
    metrics: dict,
    dataset_id: str,
    run_id: str,
    config: dict | None = None,
    evaluated_id: str | None = None,
) -> RegisteredModel:
    """Register the model folder `model_dir` with its metrics as the next version of
    ``cfg.model_name``, after `check_registrable`."""
    model = model_folder(model_dir)
    card = {
        "model_name": cfg.model_name,
        "model_card": read_card(model).to_dict(),
        "model_id": check_registrable(model, evaluated_id, metrics, cfg),
        "dataset_id": dataset_id,
        "run_id": run_id,
        "metrics": metrics,
        "sha256": {name: sha256_file(model / name) for name in (WEIGHTS, CARD)},
        "config": config or {},
    }
    if is_s3(cfg.uri):
        uri, version = _register_s3(
            f"{cfg.uri.rstrip('/')}/{cfg.model_name}", model, card, cfg.s3_endpoint_url
        )
    else:
        uri, version = _register_local(Path(cfg.uri) / cfg.model_name, model, card)
    log.info("registered %s version %d at %s", cfg.model_name, version, uri)
    return RegisteredModel(uri, version, {**card, "version": version})


def verify_version(folder: Path, source: str) -> Path:
    """Check every file of a registered version in `folder` against the sums in its metadata;
    DataError naming the file when one is missing or changed. Returns `folder`."""
    meta_path = folder / META
    try:
        meta = json.loads(meta_path.read_text())
        sums = meta["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{source}: no readable {META} ({exc}); not a complete version") from exc
    for name in (WEIGHTS, CARD):
        path = folder / name
        if not path.is_file():
            raise DataError(f"{source}/{name}: missing; the version is incomplete")
        if sha256_file(path) != sums.get(name):
            raise DataError(
                f"{source}/{name}: does not match the sha256 in {META} (tampered or "
                "corrupt); not loaded. Re-register the model or fetch it again"
            )
    return folder


def fetch_model(uri: str, dest: str, endpoint_url: str | None = None) -> Path:
    """Copy a registered version (local or s3://) to the folder `dest`, checking every file
    against the sums in its metadata; returns `dest` (a model folder)."""
    dest_path = Path(dest)
    dest_path.mkdir(parents=True, exist_ok=True)
    names = (WEIGHTS, CARD, META)
    if is_s3(uri):
        bucket, key = split_s3(uri, "--model")
        client = s3_client(endpoint_url)
        for name in names:
            client.download_file(bucket, f"{key}/{name}", str(dest_path / name))
    else:
        for name in names:
            shutil.copy2(Path(uri) / name, dest_path / name)
    return verify_version(dest_path, uri)
