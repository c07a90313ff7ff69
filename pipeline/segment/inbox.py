"""The ``segment_new_images`` DAG's one call: the images of an inbox (a folder, or an S3
prefix fetched into the output folder) that were not segmented before, with the production
model (`pipeline.segment.batch.segment_folder` with ``once``)."""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.atomic import atomic_path
from pipeline.io import IMAGE_SUFFIXES
from pipeline.segment.batch import SegmentResult, folder_options, segment_folder

log = logging.getLogger(__name__)


def segment_new_images(params: dict) -> dict:
    """The ``segment_new_images`` DAG's one call: every image of ``predict.images`` (a folder,
    or ``s3://bucket/prefix`` with ``data.s3_endpoint_url``) not segmented before, with
    ``predict.model`` (default: the production alias). `params`: ``config_file``,
    ``overrides`` and the flat ``images``, ``out``, ``model`` (empty: the config's). An empty
    inbox is a run with nothing to do."""
    from pipeline.config.params import config_from_params
    from pipeline.registry.aliases import current
    from pipeline.registry.commands import model_for_predict
    from pipeline.registry.versions import Registry

    flat = {f"predict.{k}": params[k] for k in ("images", "out", "model") if params.get(k)}
    overrides = {**(params.get("overrides") or {}), **flat}
    cfg = config_from_params({"config_file": params.get("config_file"), "overrides": overrides})
    p = cfg.predict
    images = p.images
    if images.startswith("s3://"):  # new objects under the prefix, fetched once
        images = str(pull_s3_inbox(images, Path(p.out), cfg.data.s3_endpoint_url))
    if Path(images).is_dir() and not any(
        f.suffix.lower() in IMAGE_SUFFIXES for f in Path(images).iterdir()
    ):
        log.info("%s: no images; nothing to do", p.images)
        return SegmentResult(p.out, note=f"{p.images}: no images").to_dict()
    alias = p.model if not (Path(p.model).exists() or "://" in p.model) else None
    if alias and not alias.isdigit() and current(Registry(cfg.registry), alias) is None:
        note = f"no {alias!r} model in {cfg.registry.uri} yet; images wait for one"
        log.warning(note)  # a new deployment: nothing trained yet is not an error
        return SegmentResult(p.out, note=note).to_dict()
    with model_for_predict(cfg, p.model) as model:
        return segment_folder(
            model,
            images,
            p.out,
            p.pixel_size_um,
            p.object_diameter,
            once=True,
            **folder_options(p),
        ).to_dict()


def pull_s3_inbox(uri: str, out: Path, endpoint_url: str | None) -> Path:
    """New image objects (`pipeline.io.IMAGE_SUFFIXES`) under ``s3://bucket/prefix`` copied
    into ``out/.inbox-s3/`` (an object already there with the same size is not fetched again);
    returns that folder."""
    from pipeline.ingest.sources import s3_list

    local = out / ".inbox-s3"
    local.mkdir(parents=True, exist_ok=True)
    client, bucket, prefix, objects = s3_list(uri, endpoint_url)
    for obj in objects:
        name = obj["Key"][len(prefix) :]
        if "/" in name or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            continue  # only the prefix's own images, by their plain names
        dest = local / name
        if dest.is_file() and dest.stat().st_size == obj["Size"]:
            continue
        with atomic_path(dest) as tmp:
            client.download_file(bucket, obj["Key"], str(tmp))
    return local
