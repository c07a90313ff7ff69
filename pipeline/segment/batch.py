"""Segment a folder of new images with a model: labels, overlays and measurements, and (for the
``segment_new_images`` DAG) each image exactly once.

Output folder::

    <stem>_labels.tif     (H, W) instance labels, 0 = background (uint16; uint32 past 65535)
    <stem>_overlay.png    the first channel with the objects' outlines
    <stem>_objects.csv    one row per object (pipeline.segment.measure)
    images.csv            one row per image: objects, pixel size, model, flip TTA, faint cut, when
    .done/<sha256>.json   (with ``once``) the images already segmented, by content

Each file is written atomically. With ``once``, an image is claimed by creating its ``.done``
entry exclusively before its outputs are written, so two runs never segment the same image,
and an image seen before (same bytes, any name) is skipped, whatever model or flip TTA segmented
it (its ``.done`` entry and images.csv row say which): to segment images again with another
model, write to another folder.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pipeline.atomic import atomic_path
from pipeline.config.sections import PredictConfig
from pipeline.conventions import Record, now
from pipeline.errors import DataError
from pipeline.io import read_image, sha256_file, write_labels
from pipeline.segment import steps
from pipeline.segment.card import ModelCard
from pipeline.segment.handoff import Handoff, Parcel, Slots, discard, handoff, load, take
from pipeline.segment.outfolder import claim, list_images, read_table, record_done, update_table
from pipeline.segment.workers import default_workers, processes, submit

log = logging.getLogger(__name__)


@dataclass
class SegmentResult(Record):
    out_dir: str
    segmented: list[str] = field(default_factory=list)  # label images written now
    skipped: list[str] = field(default_factory=list)  # images segmented before (with once)
    table: str = ""  # images.csv
    note: str = ""  # why nothing was done, when nothing was
    # images taken for empty fields, their objects dropped (`postprocess.min_field_contrast`)
    emptied: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # where this process's time went


def segment_folder(
    model_dir: str,
    images: str | Path,
    out_dir: str | Path,
    pixel_size_um: float | None = None,
    object_diameter: float = 0.0,
    once: bool = False,
    workers: int = -1,
    flip_tta: bool | None = None,
    min_relative_intensity: float | None = None,
    compile: bool = False,
    images_per_step: int = 0,
    channel: int = -1,
    min_field_contrast: float | None = None,
) -> SegmentResult:
    """Segment every image in `images` (a folder of TIF, PNG, JPEG or BMP images, or one:
    (H, W), (C, H, W) with C the model's channels, or colour for a one-channel model) into
    `out_dir` (layout in the module docstring). `pixel_size_um` (else the TIF's own
    resolution) puts areas and centroids in µm too; `object_diameter` (px, 0: measured per
    image) is the objects' size the network's input is rescaled from.

    The network runs here, on one step of images after another (`pipeline.segment.steps`);
    `workers` processes read, checksum, normalise and measure the next images meanwhile
    (`prepare_image`) and cut the instances, measure them and write the outputs of the ones done
    (`finish_image`), so on a GPU the network is fed while the CPU work of many images runs at
    once (-1: `default_workers`; 0: all here, in turn); the arrays pass between the processes as
    files in a RAM folder (`pipeline.segment.handoff`). Results and images.csv are the same
    either way; the result's ``seconds`` say how long this process ran the network, waited for
    prepared images (a GPU fed too slowly waits), handed arrays off and waited for workers to
    finish images (they are short of cores); without workers, how long it prepared and finished
    images itself. `flip_tta` (None: the card's ``postprocess.flip_tta``) switches flip
    test-time augmentation on or off; `min_relative_intensity` and `min_field_contrast` (None:
    the card's) set the faint-object and empty-field cuts (0: keep them); `compile` runs the
    network through torch.compile on a CPU (`pipeline.segment.compiled`); `images_per_step`
    (0: `default_images_per_step`) is how many consecutive images of one size go through the
    network together (`inference.card_maps_batch`); `channel` (-1: none) is the one channel
    of multi-channel or colour images a one-channel model reads (`fields.as_chw`), recorded
    in images.csv."""
    from pipeline.segment.artifact import load_model, model_id, read_card
    from pipeline.segment.compiled import compiled
    from pipeline.segment.graphs import replayed
    from pipeline.segment.inference import card_maps, card_maps_batch
    from pipeline.segment.network import for_inference, resolve_device
    from pipeline.segment.passes import cpu_bf16

    paths = list_images(images)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; pass --out a folder")
    out.mkdir(parents=True, exist_ok=True)
    read_table(out)  # an earlier images.csv that cannot be read stops before any work
    device = resolve_device("auto")
    read_card(model_dir)  # a model folder without a readable card stops before workers start
    workers = default_workers(device) if workers < 0 else workers
    per_step = images_per_step or steps.default_images_per_step(device)
    with (
        processes(workers if len(paths) > 1 else 0) as pool,
        handoff(pool is not None) as parcels,
    ):
        model, card = load_model(model_dir, device)  # while the workers start
        card = card.for_prediction(flip_tta, min_relative_intensity, min_field_contrast)
        if card.postprocess.flip_tta and device.type == "cpu" and not cpu_bf16():
            log.info(
                "flip TTA: four network passes per image, in fp32 on this CPU (no native bf16): "
                "about four times one pass; predict.flip_tta: false runs one%s",
                ", with the post-processing tuned for it" if card.postprocess_one_pass else "",
            )
        model = for_inference(model)  # on a GPU as CUDA graphs per image size, or compiled
        model = replayed(compiled(model, device, compile), device)
        mid, result, rows = model_id(model_dir), SegmentResult(str(out)), []
        start = time.perf_counter()
        # without workers this process prepares each image as it reads ahead and finishes it
        # as it hands it off
        prep = "waiting for prepared images" if pool else "preparing (read, normalise, size)"
        hand = "handing off" if pool else "finishing (instances, measurements, writes)"
        waits = ("waiting for finished images",) if pool else ()
        clock = dict.fromkeys(("network", prep, hand, *waits), 0.0)
        slots = Slots(parcels, keep=2 * workers + 2)  # the maps' files: as many as in flight
        pending: deque[tuple[Future, Parcel]] = deque()
        jobs = (card, object_diameter, pixel_size_um, parcels, channel)
        made = steps.prepared(paths, lambda p: submit(pool, prepare_image, p, *jobs), workers)
        fresh = _unclaimed(made, out, result) if once else made
        groups = steps.steps(fresh, per_step, lambda p: steps.step_key(p, card, per_step))
        while True:
            t = time.perf_counter()
            group = next(groups, None)
            clock[prep] += time.perf_counter() - t
            if group is None:
                break
            t = time.perf_counter()
            k = len(card.outputs)
            intos = [slots.array((k, *p.array.shape[1:]), np.float32) for p in group]
            images, objects = [p.array for p in group], [p.objects for p in group]
            if len(group) == 1:  # alone: its objects may still need measuring (card_maps)
                raw_now = None if objects[0] else load(group[0].raw)  # read only for that
                card_maps(
                    model, images[0], device, card, objects=objects[0], raw=raw_now, out=intos[0]
                )
            else:
                card_maps_batch(model, images, device, card, objects, outs=intos)
            clock["network"] += (t1 := time.perf_counter()) - t
            for p, into in zip(group, intos, strict=True):
                ids = {"sha256": p.digest, "model_id": mid, "channel": channel}
                maps = slots.parcel(into)
                job = (out, p.path, p.raw, p.image, maps, card, p.size, ids, once)
                pending.append((submit(pool, finish_image, *job), maps))
            clock[hand] += (t := time.perf_counter()) - t1
            while pending and (len(pending) > 2 * workers or pending[0][0].done()):
                rows.append(_collect(*pending.popleft(), result, slots))  # bounded, in order
            if pool:
                clock["waiting for finished images"] += time.perf_counter() - t
        while pending:
            rows.append(_collect(*pending.popleft(), result, slots))
    clock["total"] = time.perf_counter() - start
    result.seconds = {k: round(v, 3) for k, v in clock.items()}
    result.table = str(update_table(out, rows))
    return result


def folder_options(predict: PredictConfig) -> dict:
    """The ``predict`` settings `segment_folder` (and `inference.predict_folder`) takes as they
    are, by keyword: one place for the CLI and the DAG to pass them from."""
    keys = ("workers", "flip_tta", "min_relative_intensity", "compile", "images_per_step")
    keys += ("channel", "min_field_contrast")
    return {k: getattr(predict, k) for k in keys}


def _unclaimed(prepared: Iterator, out: Path, result: SegmentResult) -> Iterator:
    """The images of `prepared` this run claims (`outfolder.claim`); those segmented before go to
    `result.skipped`, their parcels discarded."""
    for p in prepared:
        if claim(out, p.digest, p.path):
            yield p
        else:
            result.skipped.append(str(p.path))
            discard(p.raw)
            discard(p.image)


def prepare_image(
    path: Path,
    card: ModelCard,
    object_diameter: float,
    pixel_size_um: float | None,
    parcels: Handoff,
    channel: int = -1,
) -> tuple[Path, str, Parcel, Parcel, float, float | None]:
    """One image's CPU work before the network: (`path`, its sha256, its (C, H, W) intensities
    as read and normalised float32 (C, H, W), as `parcels`, its objects' diameter in px
    (`object_diameter`, or measured: `fields.image_objects`; 0.0: left to the network), its
    pixel size in µm (`pixel_size_um`, or the TIF's own, or None)); `channel` as in
    `fields.as_chw`."""
    from pipeline.segment.fields import as_chw, card_input, image_objects
    from pipeline.segment.measure import pixel_size_from_tif

    digest = sha256_file(path)
    raw = as_chw(read_image(path), path, card, channel)
    image = card_input(raw, card)
    objects = object_diameter or image_objects(image, card, raw)
    size = pixel_size_um or pixel_size_from_tif(path)
    return path, digest, parcels.put(raw), parcels.put(image), objects, size


def finish_image(
    out: Path,
    path: Path,
    raw: Parcel,
    image: Parcel,
    maps: Parcel,
    card: ModelCard,
    size: float | None,
    ids: dict,
    once: bool,
) -> dict:
    """One image's (K, H, W) output maps -> its instances (the card's method), measurements,
    overlay and label image written to `out`; returns its images.csv row (with the label
    image's path under ``labels``; ``dropped_as_empty``: how many objects the empty-field cut,
    ``postprocess.min_field_contrast``, took away, so a field it emptied can be told from one
    the network found nothing in). `ids`: its sha256, the model's id and the channel read (-1:
    the image as it is). `raw` is its (C, H, W) image, `image` normalised; all
    three arrays as parcels (`pipeline.segment.handoff`): the images taken, the maps a slot
    the network's process reuses once this returns."""
    from pipeline.segment.measure import measure, overlay_png
    from pipeline.segment.postprocess import to_instances

    raw, image, maps = take(raw), take(image), load(maps)  # maps: a slot, reused when done
    labels = to_instances(maps, image, card)
    dropped = 0
    if not labels.any() and card.postprocess.min_field_contrast:  # emptied, or nothing found?
        uncut = replace(card, postprocess=replace(card.postprocess, min_field_contrast=0.0))
        dropped = int(to_instances(maps, image, uncut).max())
    objects = measure(labels, raw, card.channels, path.name, size)
    with atomic_path(out / f"{path.stem}_objects.csv") as tmp:
        objects.to_csv(tmp, index=False)
    with atomic_path(out / f"{path.stem}_overlay.png") as tmp:
        tmp.write_bytes(overlay_png(raw, labels, first_view(image, card)))
    written = write_labels(out / f"{path.stem}_labels.tif", labels)
    row = {
        "image": path.name,
        "sha256": ids["sha256"],
        "n_objects": len(objects),
        "pixel_size_um": size,
        "model_id": ids["model_id"],
        "flip_tta": card.postprocess.flip_tta,
        "min_relative_intensity": card.postprocess.min_relative_intensity,
        "min_field_contrast": card.postprocess.min_field_contrast,
        "dropped_as_empty": dropped,
        "channel": ids.get("channel", -1),
        "segmented_at": now(),
    }
    if once:
        record_done(out, ids["sha256"], row)
    return {**row, "labels": str(written)}


def first_view(image: np.ndarray, card: ModelCard) -> np.ndarray | None:
    """The (H, W) first channel of the normalised (C, H, W) `image` when it is a percentile
    view (the overlay's grey image, stretched already), else None (`measure.overlay_png`)."""
    from pipeline.preprocess.samples import measures_on_percentiles

    return image[0] if measures_on_percentiles(card.normalisation) else None


def _collect(job: Future, maps: Parcel, result: SegmentResult, slots: Slots) -> dict:
    row = job.result()  # a worker's error is raised here
    slots.release(maps)  # its worker is done with it
    result.segmented.append(row.pop("labels"))
    emptied = row["dropped_as_empty"]
    if emptied:
        result.emptied.append(row["image"])
    why = f" ({emptied} dropped as an empty field's noise)" if emptied else ""
    log.info("%s: %d objects%s", row["image"], row["n_objects"], why)
    return row
