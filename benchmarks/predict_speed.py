"""End-to-end prediction speed: read, normalise, network, instances, write, per field.

    python benchmarks/predict_speed.py [--model MODEL_FOLDER] [--image TIF] [--size 1040 1388]
        [--fields 3] [--serial N] [--encoder resnet18] [--workers -1] [--flip-tta card|on|off]
        [--compile off|on] [--images-per-step N]

Fields are a real frame (--image; default: the first GOWT1 frame in ../shared when present)
mirrored out to --size, or noise without one. Without --model a resnet18 network with the
project's default card is built (untrained: speed only; on noise its post-processing is not
typical, so pass a trained model for a figure to quote). Prints device, versions and the time of
each part of one image, in turn, on the path `cellseg predict` takes
(`pipeline.segment.batch.segment_folder`, BatchNorm folded): read, checksum, normalise, objects'
size, network, instances, measurements and overlay, write (`--serial` fields). Then the whole
folder through `segment_folder` itself with `--workers` post-processing processes (-1: its
default), in images per second with and without what starting up costs (a run on the first
fields alone, subtracted), and how long the network's process ran the network and waited
for workers' prepared images: the GPU figure (`--size 1024 1024 --encoder resnet34 --fields 600`).
`--flip-tta on|off` overrides the card's flip test-time augmentation (four network passes), as
`cellseg predict --set predict.flip_tta=...` does. `--compile on` runs the network through
torch.compile on a CPU (`predict.compile`); the first field's network step, which compiles, is
printed apart (the warm-up pass is never in the figures). `--images-per-step` sets how many
fields of one size go through the network together (`predict.images_per_step`; 0: 8 on a GPU, 1
on a CPU); on a GPU the network step alone is also timed for 8 fields in one batch.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile
import torch

from pipeline.io import read_tif, sha256_file, write_labels
from pipeline.preprocess.samples import normalise
from pipeline.segment.artifact import load_model, save_model
from pipeline.segment.batch import first_view, segment_folder
from pipeline.segment.card import OUTPUTS, ModelCard
from pipeline.segment.compiled import compiled
from pipeline.segment.fields import as_chw, image_objects
from pipeline.segment.graphs import replayed
from pipeline.segment.inference import batch_key, card_maps, card_maps_batch
from pipeline.segment.measure import measure, overlay_png
from pipeline.segment.network import build_model, for_inference, resolve_device
from pipeline.segment.postprocess import to_instances
from pipeline.segment.steps import default_images_per_step
from pipeline.segment.workers import default_workers

SHARED = Path(os.environ.get("CELLSEG_SHARED", Path(__file__).parents[2] / "shared")) / "data"
FRAME = SHARED / "ctc" / "Fluo-N2DH-GOWT1" / "02" / "t000.tif"
FLIPS = {"card": None, "on": True, "off": False}  # --flip-tta -> segment_folder's flip_tta


def fields(path: Path | None, channels: int, size: tuple[int, int], n: int) -> list[np.ndarray]:
    """`n` (channels, *size) uint8/uint16 fields: the TIF at `path` mirrored out to `size` (its
    channels repeated) and shifted a little each time, or noise when `path` is None."""
    h, w = size
    if path is None:
        rng = np.random.default_rng(0)
        return [(rng.random((channels, h, w)) * 255).astype(np.uint8) for _ in range(n)]
    frame = tifffile.imread(path)
    frame = frame if frame.ndim == 2 else frame.max(axis=-1)
    big = np.pad(frame, ((0, h + n), (0, w + n)), mode="symmetric")
    return [np.repeat(big[None, i : i + h, i : i + w], channels, axis=0) for i in range(n)]


def graphs_check(
    model, state: dict, device: torch.device, card: ModelCard, n: int = 20, per_step: int = 8
) -> str:
    """The network step of one field (`state`: the serial loop's) run eagerly and replayed as
    CUDA graphs (`segment_folder`'s way on a GPU), cores idle: ms per field, mean of `n` after
    three warm-up calls, and whether the graphs' maps equal the eager ones exactly; then
    replayed for `per_step` copies of the field in one batch (`card_maps_batch`), ms per field
    and the largest difference from the one-field maps."""
    run = {"objects": state["objects"], "raw": state["raw"]}
    want = card_maps(model, state["image"], device, card, **run)
    ms, same = {}, True
    for name, net in (("eager", model), ("CUDA graphs", replayed(model, device))):
        for _ in range(3):
            card_maps(net, state["image"], device, card, **run)
        t = time.perf_counter()
        for _ in range(n):
            same &= np.array_equal(card_maps(net, state["image"], device, card, **run), want)
        ms[name] = 1e3 * (time.perf_counter() - t) / n
    images, objects = [state["image"]] * per_step, [state["objects"]] * per_step
    if batch_key(state["image"].shape, card, state["objects"]) is not None:
        net = replayed(model, device)
        for _ in range(3):
            card_maps_batch(net, images, device, card, objects)
        t = time.perf_counter()
        for _ in range(n):
            maps = card_maps_batch(net, images, device, card, objects)
        ms[f"CUDA graphs, {per_step} in one batch"] = 1e3 * (time.perf_counter() - t) / n / per_step
        apart = max(float(np.abs(m - want).max()) for m in maps)
    times = ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items())
    return (
        f"the network step alone, per field ({n} calls each): {times}; the maps equal: {same}"
        f"{f'; batched maps at most {apart:.2g} from one field' if len(ms) > 2 else ''}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a model folder (default: an untrained resnet18)")
    parser.add_argument("--image", type=Path, help="a real frame (default: a GOWT1 frame)")
    parser.add_argument("--size", type=int, nargs=2, default=(1040, 1388))
    parser.add_argument("--fields", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--encoder", default="resnet18", help="of the untrained network")
    parser.add_argument("--workers", type=int, default=-1, help="post-processing processes")
    parser.add_argument("--serial", type=int, help="fields timed part by part (default all)")
    parser.add_argument("--flip-tta", choices=sorted(FLIPS), default="card")
    parser.add_argument("--compile", choices=("off", "on"), default="off")
    parser.add_argument("--images-per-step", type=int, default=0, help="0: 8 on a GPU, 1 on a CPU")
    args = parser.parse_args()
    device = resolve_device(args.device)
    work = Path(tempfile.mkdtemp(prefix="cellseg-speed-"))
    model_dir = args.model
    if model_dir is None:
        card = ModelCard(args.encoder, 1, list(OUTPUTS[:2]), ["fluo"], "nuclei", "fluo", 1.0, 99.8)
        model_dir = str(work / "model")
        save_model(build_model(**card.arch), card, model_dir)
    model, card = load_model(model_dir, device)
    flip = FLIPS[args.flip_tta]
    card = card.for_prediction(flip)
    compile_on = args.compile == "on"
    model = compiled(for_inference(model), device, compile_on)
    image_path = args.image or (FRAME if FRAME.is_file() else None)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor()
    print(
        f"device {device} ({name or 'cpu'}), torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, model {card.encoder} {card.decoder_channels}"
        f"{'' if args.model else ' (untrained)'}, flip TTA {card.postprocess.flip_tta}, "
        f"compiled {compile_on and device.type == 'cpu'}, "
        f"fields from {image_path or 'noise'}"
    )
    h, w = args.size
    folder = work / "fields"
    folder.mkdir()
    for i, field in enumerate(fields(image_path, len(card.channels), (h, w), args.fields)):
        tifffile.imwrite(folder / f"f{i}.tif", field)
    lo, hi, how = card.low_percentile, card.high_percentile, card.normalisation
    steps: dict[str, Callable] = {  # each part of one image, in segment_folder's order
        "read": lambda s: s.update(raw=as_chw(read_tif(s["path"]), s["path"], card)),
        "sha256": lambda s: s.update(digest=sha256_file(s["path"])),
        "normalise": lambda s: s.update(image=normalise(s["raw"], lo, hi, how)),
        "size": lambda s: s.update(objects=image_objects(s["image"], card, s["raw"])),
        "network": lambda s: s.update(
            maps=card_maps(model, s["image"], device, card, objects=s["objects"], raw=s["raw"])
        ),
        "instances": lambda s: s.update(labels=to_instances(s["maps"], s["image"], card)),
        "measure": lambda s: s.update(
            table=measure(s["labels"], s["raw"], card.channels, "f", None),
            png=overlay_png(s["raw"], s["labels"], first_view(s["image"], card)),
        ),
        "write": lambda s: write_labels(work / f"{s['path'].stem}_labels.tif", s["labels"]),
    }
    parts, first = dict.fromkeys(steps, 0.0), dict.fromkeys(steps, 0.0)
    serial = min(args.serial or args.fields, args.fields)
    for n, i in enumerate([0, *range(serial)]):  # the first pass warms up (imports, caches)
        state = {"path": folder / f"f{i}.tif"}
        for part, step in steps.items():
            t = time.perf_counter()
            step(state)
            (parts if n else first)[part] += time.perf_counter() - t
    total = sum(parts.values()) / serial
    detail = ", ".join(f"{k} {v / serial:.3f}" for k, v in parts.items())
    print(f"one {h}x{w} field end to end, in turn ({serial} fields): {total:.3f} s ({detail})")
    warm = first["network"]
    print(f"the warm-up field's network step (compiling with --compile on): {warm:.2f} s")
    if device.type == "cuda":
        print(graphs_check(model, state, device, card))
    workers = default_workers(device) if args.workers < 0 else args.workers
    few = folder.parent / "few"  # the first fields alone: what starting up costs
    few.mkdir()
    for i in range(min(args.fields, 2 * workers + 2)):
        os.link(folder / f"f{i}.tif", few / f"f{i}.tif")
    runs = {}
    for name, images in (("few", few), ("all", folder)):
        t = time.perf_counter()
        out = work / f"out-{name}"  # not the fields folder: outputs apart from the inputs
        run = {"workers": args.workers, "flip_tta": flip, "compile": compile_on}
        run["images_per_step"] = args.images_per_step
        done = segment_folder(model_dir, images, out, **run)
        runs[name] = (len(done.segmented), time.perf_counter() - t)
    split = ", ".join(f"{k} {v:.2f} s" for k, v in done.seconds.items())
    (n, seconds), (n0, seconds0) = runs["all"], runs["few"]
    steady = (n - n0) / (seconds - seconds0) if n > n0 and seconds > seconds0 else float("nan")
    print(
        f"segment_folder on {n} fields, {workers} post-processing workers, "
        f"{args.images_per_step or default_images_per_step(device)} images per network step: "
        f"{seconds:.2f} s, "
        f"{n / seconds:.2f} images/s (model load and workers' start included; {n0} fields: "
        f"{seconds0:.2f} s); past the first {n0}: {steady:.2f} images/s; the network's "
        f"process: {split}"
    )


if __name__ == "__main__":
    main()
