"""Segmenting folders of new images: labels, overlays, measurements (in µm when the pixel size
is known), and each image exactly once for the segment_new_images DAG."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from pipeline.errors import DataError
from pipeline.evaluate.plots import PRED_COLOUR
from pipeline.preprocess.samples import Sample, normalise
from pipeline.segment import batch, handoff, passes, workers
from pipeline.segment.artifact import load_model, save_model
from pipeline.segment.batch import segment_folder
from pipeline.segment.card import ModelCard
from pipeline.segment.inference import predict_labels
from pipeline.segment.measure import measure, overlay_png, pixel_size_from_tif
from pipeline.segment.network import build_model, for_inference


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    card = ModelCard("resnet18", 2, ["foreground", "distance"], ["c1", "c5"], "cells", "c5", 1, 99)
    folder = tmp_path_factory.mktemp("m") / "model"
    torch.manual_seed(0)  # the same weights whatever ran before in this process
    save_model(build_model(**card.arch), card, folder)
    return str(folder)


def test_measurements_per_object_in_pixels_and_microns():
    labels = np.zeros((20, 30), np.uint16)
    labels[2:6, 3:8] = 1  # 4 x 5 = 20 px
    labels[10:20, 20:30] = 7  # 100 px
    raw = np.stack([np.full((20, 30), 10.0), np.arange(600.0).reshape(20, 30)])
    table = measure(labels, raw, ["dna", "actin"], "a.tif", pixel_size_um=0.5)
    assert list(table["label"]) == [1, 7] and list(table["area_px"]) == [20, 100]
    assert list(table["area_um2"]) == [5.0, 25.0]
    assert table.loc[0, "centroid_y_px"] == 3.5 and table.loc[0, "centroid_x_um"] == 2.5
    assert list(table["mean_dna"]) == [10.0, 10.0]
    assert table.loc[1, "mean_actin"] == pytest.approx(raw[1][10:20, 20:30].mean())
    assert "area_um2" not in measure(labels, raw, ["dna", "actin"], "a.tif").columns
    with pytest.raises(DataError, match="a.tif: image shape"):
        measure(labels, raw[:1], ["dna", "actin"], "a.tif")


def test_the_overlay_is_an_indexed_png_of_the_grey_image_with_the_outlines():
    import io

    from PIL import Image

    labels = np.zeros((40, 50), np.int32)
    labels[10:20, 10:30] = 3
    raw = np.linspace(0, 1000, 40 * 50).reshape(1, 40, 50).astype(np.uint16)
    picture = Image.open(io.BytesIO(overlay_png(raw, labels)))
    assert picture.mode == "P" and picture.size == (50, 40)
    rgb = np.asarray(picture.convert("RGB"))
    outline = (rgb == PRED_COLOUR).all(axis=-1)
    assert outline[10, 10:30].all() and outline[19, 10:30].all() and not outline[15, 15]
    assert outline.sum() == 2 * 20 + 2 * 8 and (rgb[~outline, 0] == rgb[~outline, 1]).all()
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 254  # stretched 1st-99.8th percentile
    flat = np.full((40, 50), 0.5, np.float32)  # a grey view given: used as it is
    given = np.asarray(Image.open(io.BytesIO(overlay_png(raw, labels, flat))).convert("RGB"))
    assert (given[~outline] == 127).all()
    with pytest.raises(DataError, match=r"\(4, 5\)"):
        overlay_png(raw, labels, flat[:4, :5])


def test_a_folder_is_segmented_with_overlays_measurements_and_once(model, tmp_path):
    images, out = tmp_path / "in", tmp_path / "out"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        tifffile.imwrite(images / f"{name}.tif", rng.integers(0, 4000, (2, 64, 80), np.uint16))
    # ImageJ metadata: 0.25 µm per pixel
    tifffile.imwrite(
        images / "c.tif",
        rng.integers(0, 255, (64, 80, 2), np.uint8),
        imagej=False,
        resolution=(4.0, 4.0),
        resolutionunit="CENTIMETER",
    )
    assert pixel_size_from_tif(images / "c.tif") == pytest.approx(2500.0)
    first = segment_folder(model, images, out, once=True)
    assert len(first.segmented) == 3 and first.skipped == []
    for stem in "abc":
        assert tifffile.imread(out / f"{stem}_labels.tif").shape == (64, 80)
        assert (out / f"{stem}_overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        objects = pd.read_csv(out / f"{stem}_objects.csv")
        assert {"label", "area_px", "centroid_y_px", "mean_c1", "mean_c5"} <= set(objects)
    table = pd.read_csv(first.table)
    assert sorted(table["image"]) == ["a.tif", "b.tif", "c.tif"]
    assert table.set_index("image").loc["c.tif", "pixel_size_um"] == pytest.approx(2500.0)
    # again, plus a renamed copy of a and one new image: only the new one is segmented
    shutil.copy(images / "a.tif", images / "a_copy.tif")
    tifffile.imwrite(images / "d.tif", rng.integers(0, 4000, (2, 64, 80), np.uint16))
    before = (out / "a_labels.tif").stat().st_mtime_ns
    second = segment_folder(model, images, out, once=True)
    assert [p.rsplit("/", 1)[-1] for p in second.segmented] == ["d_labels.tif"]
    assert sorted(p.rsplit("/", 1)[-1] for p in second.skipped) == [
        "a.tif",
        "a_copy.tif",
        "b.tif",
        "c.tif",
    ]
    assert (out / "a_labels.tif").stat().st_mtime_ns == before
    assert sorted(pd.read_csv(second.table)["image"]) == ["a.tif", "b.tif", "c.tif", "d.tif"]
    assert sorted(p.name for p in images.iterdir()) == [  # inputs untouched
        "a.tif",
        "a_copy.tif",
        "b.tif",
        "c.tif",
        "d.tif",
    ]


def test_worker_processes_write_what_one_process_writes(model, tmp_path, monkeypatch):
    images = tmp_path / "in"
    images.mkdir()
    rng = np.random.default_rng(1)
    for name in "abcde":  # two sizes: the maps' slots of each are reused
        size = (2, 72, 96) if name in "bd" else (2, 64, 80)
        tifffile.imwrite(images / f"{name}.tif", rng.integers(0, 4000, size, np.uint16))
    ram = tmp_path / "ram"  # this test's own RAM folder: tests beside it use /dev/shm
    ram.mkdir()
    monkeypatch.setattr(handoff, "RAM_FOLDER", ram)
    monkeypatch.setattr(handoff, "RAM_FREE_BYTES", 0)
    threads = torch.get_num_threads()
    inline = segment_folder(model, images, tmp_path / "inline", workers=0)
    parallel = segment_folder(model, images, tmp_path / "parallel", workers=2)
    assert torch.get_num_threads() == threads  # cut to the cores the workers leave, then back
    assert not list(ram.iterdir())  # the handoff folder and its files cleaned up
    assert 0 < parallel.seconds["network"] < parallel.seconds["total"]
    assert "handing off" in parallel.seconds and "preparing" not in " ".join(parallel.seconds)
    parts = {k: v for k, v in inline.seconds.items() if k != "total"}  # each rounded to 1 ms
    assert [k.split()[0] for k in parts] == ["network", "preparing", "finishing"]
    assert 0 < min(parts.values()) and sum(parts.values()) <= inline.seconds["total"] + 0.002
    names = [Path(p).name for p in parallel.segmented]
    assert names == [Path(p).name for p in inline.segmented] == [f"{n}_labels.tif" for n in "abcde"]
    for name in "abcde":
        for suffix in ("_labels.tif", "_objects.csv", "_overlay.png"):
            one, many = (tmp_path / d / f"{name}{suffix}" for d in ("inline", "parallel"))
            assert one.read_bytes() == many.read_bytes(), f"{name}{suffix}"
    tables = [pd.read_csv(r.table).drop(columns="segmented_at") for r in (inline, parallel)]
    pd.testing.assert_frame_equal(*tables)


def test_workers_yield_the_cores_to_the_networks_process():
    with workers.processes(1) as pool:
        assert pool.submit(os.nice, 0).result() == min(19, os.nice(0) + workers.WORKER_NICE)


MAIN_SCRIPT = """
import os, sys
with open(sys.argv[1], "a") as runs:
    runs.write(str(os.getpid()) + "\\n")  # each time this script runs, in any process
if __name__ == "__main__":
    from pipeline.segment import workers
    with workers.processes(2) as pool:
        nap = "__import__('time').sleep(1) or __import__('os').getpid()"  # both busy at once
        pids = {job.result() for job in [pool.submit(eval, nap) for _ in range(2)]}
    print(len(pids), "__file__" in vars(sys.modules["__main__"]))
"""


def test_workers_do_not_run_the_main_script_again(tmp_path):
    script, runs = tmp_path / "main.py", tmp_path / "runs.txt"
    script.write_text(MAIN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run(
        [sys.executable, str(script), str(runs)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "True"]  # two workers; the script's __file__ put back
    assert len(runs.read_text().split()) == 1  # by this process alone, not by the workers


# In a worker: whether torch is imported, and its threads if so (None if not). An expression for
# the builtin eval, as a function of this module would import the module, and torch with it
TORCH_HERE = (
    "(lambda t: (t is not None, t and t.get_num_threads()))(__import__('sys').modules.get('torch'))"
)


def test_workers_start_without_torch_and_give_it_one_thread_when_a_field_needs_it(tmp_path):
    card = ModelCard("resnet18", 1, ["foreground", "distance"], ["fluo"], "nuclei", "fluo", 1, 99)
    card.diameter = 20.0  # the objects' size is measured: at half size past 512 px a side
    rng = np.random.default_rng(0)
    fields = {}
    for name, shape in (("even", (600, 520)), ("odd", (601, 520))):  # odd: torch's resize
        fields[name] = tmp_path / f"{name}.tif"
        tifffile.imwrite(fields[name], rng.integers(0, 4000, shape, np.uint16))
    (tmp_path / "handoff").mkdir()
    parcels = batch.Handoff(str(tmp_path / "handoff"))  # not /dev/shm: a test beside checks it
    with workers.processes(1) as pool:
        args = (card, 0.0, None, parcels)
        path, _, raw, image, objects, size = pool.submit(
            batch.prepare_image, fields["even"], *args
        ).result()
        maps = parcels.put(np.zeros((2, 600, 520), np.float32))
        ids = {"sha256": "", "model_id": ""}
        job = (tmp_path, path, raw, image, maps, card, size, ids, False)
        assert pool.submit(batch.finish_image, *job).result()["n_objects"] == 0
        assert pool.submit(eval, TORCH_HERE).result() == (False, None)  # a whole field
        pool.submit(batch.prepare_image, fields["odd"], *args).result()
        assert pool.submit(eval, TORCH_HERE).result() == (True, 1)


def test_a_rank_model_segments_a_display_lookup_of_an_image_alike(tmp_path):
    card = ModelCard("resnet18", 1, ["foreground", "distance"], ["fluo"], "nuclei", "fluo", 1, 99)
    card.normalisation = "rank"
    card.postprocess.min_field_contrast = 0.0  # an untrained network's objects are noise's
    torch.manual_seed(0)  # an untrained network whose foreground has objects on this image
    save_model(build_model(**card.arch), card, tmp_path / "model")
    yy, xx = np.mgrid[:64, :80]
    rng = np.random.default_rng(2)
    raw = (
        100 + 3000 * np.exp(-((yy - 30) ** 2 + (xx - 40) ** 2) / 200) + rng.normal(0, 30, yy.shape)
    )
    raw = np.clip(raw, 0, None).astype(np.uint16)
    x = (raw - raw.min()) / np.ptp(raw)
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in/recorded.tif", raw)  # and a gamma 0.5 export of it
    tifffile.imwrite(tmp_path / "in/exported.tif", np.round(65535 * x**0.5).astype(np.uint16))
    segment_folder(str(tmp_path / "model"), tmp_path / "in", tmp_path / "out", object_diameter=20)
    recorded, exported = (
        tifffile.imread(tmp_path / f"out/{n}_labels.tif") for n in ("recorded", "exported")
    )
    assert recorded.max() >= 1  # objects found (the untrained network's), the same ones
    np.testing.assert_array_equal(recorded, exported)


@pytest.mark.parametrize("instances", ["network", "watershed"])
def test_a_two_view_model_reads_the_images_channels(instances, tmp_path):
    """percentile_rank: one image channel, two network inputs; the classical split reads the
    percentile view."""
    card = ModelCard("resnet18", 2, ["foreground", "distance"], ["fluo"], "nuclei", "fluo", 1, 99)
    card.normalisation, card.postprocess.instances = "percentile_rank", instances
    torch.manual_seed(0)
    save_model(build_model(**card.arch), card, tmp_path / "model")
    raw = np.random.default_rng(3).integers(0, 4000, (64, 80)).astype(np.uint16)
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in/a.tif", raw)
    model = for_inference(load_model(tmp_path / "model")[0])  # as segment_folder runs it
    image = normalise(raw[None], 1, 99, "percentile_rank")
    assert image.shape == (2, 64, 80)
    expected = predict_labels(model, image, torch.device("cpu"), card, objects=20)
    segment_folder(str(tmp_path / "model"), tmp_path / "in", tmp_path / "out", object_diameter=20)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out/a_labels.tif"), expected)
    tifffile.imwrite(tmp_path / "in/b.tif", np.stack([raw, raw]))  # the network's 2 inputs
    with pytest.raises(DataError, match=r"b.tif: shape \(2, 64, 80\), model expects 1 .*--channel"):
        segment_folder(str(tmp_path / "model"), tmp_path / "in", tmp_path / "out2")


def test_png_jpeg_and_colour_images_are_segmented_as_their_grey_tif(tmp_path, monkeypatch):
    """A one-channel model reads PNG, JPEG and BMP as well as TIF, and a colour image (a grey
    one stored as RGB, a green lookup, a transparency) as its intensity."""
    from PIL import Image

    # fp32 on every CPU: an untrained network's objects depend on the precision (seed 0 found
    # the blob with bf16 on a Xeon with AMX, nothing in fp32 on an AVX2-only EPYC)
    monkeypatch.setattr(passes, "cpu_bf16", lambda: False)
    card = ModelCard("resnet18", 1, ["foreground", "distance"], ["fluo"], "nuclei", "fluo", 1, 99)
    torch.manual_seed(2)
    net, model = build_model(**card.arch), str(tmp_path / "model")
    with torch.no_grad():  # confident outputs, as a trained network's (see the compiled test)
        net.segmentation_head[0].weight.mul_(30)
    save_model(net, card, model)
    yy, xx = np.mgrid[:64, :80]
    grey = (20 + 200 * np.exp(-((yy - 30) ** 2 + (xx - 40) ** 2) / 150)).astype(np.uint8)
    zero = np.zeros_like(grey)
    images = tmp_path / "in"
    images.mkdir()
    tifffile.imwrite(images / "a.tif", grey)
    Image.fromarray(grey).save(images / "b.png")
    Image.fromarray(np.dstack([zero, grey, zero])).save(images / "c.png")  # a green lookup
    Image.fromarray(np.dstack([grey, grey, grey, zero + 255])).save(images / "d.png")  # RGBA
    tifffile.imwrite(images / "e.tif", np.dstack([grey, grey, grey]))  # grey stored as RGB
    Image.fromarray(grey).save(images / "f.bmp")
    Image.fromarray(grey).save(images / "g.jpg", quality=95)
    (images / "notes.txt").write_text("not an image")
    done = segment_folder(model, images, tmp_path / "out", object_diameter=20, workers=0)
    labels = {Path(p).name[0]: tifffile.imread(p) for p in done.segmented}
    assert sorted(labels) == list("abcdefg") and labels["a"].max() > 0
    for name in "bcdef":
        np.testing.assert_array_equal(labels[name], labels["a"], err_msg=name)
    assert labels["g"].shape == grey.shape  # JPEG's loss moves a few pixels
    table = pd.read_csv(done.table)
    assert len(table) == 7 and (table["n_objects"] > 0).all()
    Image.fromarray(grey).save(images / "a.png")  # one name, two images: one output
    with pytest.raises(DataError, match=r"a\.png and .*a\.tif: one name, two images"):
        segment_folder(model, images, tmp_path / "out2", object_diameter=20, workers=0)
    # a composite: nuclei in blue beside another stain in red; predict.channel picks the blue
    composite = tmp_path / "composite"
    composite.mkdir()
    other = (255 - grey // 2).astype(np.uint8)
    Image.fromarray(np.dstack([other, zero, grey])).save(composite / "rgb.png")
    tifffile.imwrite(composite / "stack.tif", np.stack([other, grey]))  # (C, H, W)
    picked = {}
    for name, channel in (("rgb.png", 2), ("stack.tif", 1)):
        (single := tmp_path / f"only_{name}").mkdir()
        shutil.copy(composite / name, single / name)
        run = segment_folder(model, single, tmp_path / f"picked_{name}", 20, channel=channel)
        picked[name] = tifffile.imread(run.segmented[0])
        assert pd.read_csv(run.table)["channel"].item() == channel
    np.testing.assert_array_equal(picked["rgb.png"], labels["a"])
    np.testing.assert_array_equal(picked["stack.tif"], labels["a"])
    with pytest.raises(DataError, match=r"stack.tif: shape \(2, 64, 80\) has 2 channel\(s\)"):
        segment_folder(model, tmp_path / "only_stack.tif", tmp_path / "o3", 20, channel=2)


def test_bad_folders_are_clear(model, tmp_path):
    with pytest.raises(DataError, match="no such folder or image file"):
        segment_folder(model, tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images to segment"):
        segment_folder(model, tmp_path / "empty", tmp_path / "out")
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in/a.tif", np.zeros((2, 32, 32), np.uint16))
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="exists and is not a folder"):
        segment_folder(model, tmp_path / "in", tmp_path / "file")
    with pytest.raises(DataError, match="file: no such folder or image file"):  # not an image
        segment_folder(model, tmp_path / "file", tmp_path / "out")
    one = segment_folder(model, tmp_path / "in" / "a.tif", tmp_path / "one")  # one image
    assert [Path(p).name for p in one.segmented] == ["a_labels.tif"]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "images.csv").write_bytes(b"\x00\xff")
    with pytest.raises(DataError, match="bad/images.csv: unreadable images.csv"):
        segment_folder(model, tmp_path / "in", tmp_path / "bad")
    assert [p.name for p in (tmp_path / "bad").iterdir()] == ["images.csv"]  # nothing done


def test_an_s3_prefix_inbox_is_segmented_once(model, tmp_path, s3_server):
    import io

    import boto3

    from pipeline.segment.inbox import segment_new_images

    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket="microscope")
    rng = np.random.default_rng(2)

    def put(key: str) -> None:
        buf = io.BytesIO()
        tifffile.imwrite(buf, rng.integers(0, 4000, (2, 64, 64), np.uint16))
        s3.put_object(Bucket="microscope", Key=key, Body=buf.getvalue())

    for key in ("new/a.tif", "new/b.tif", "new/older/x.tif"):
        put(key)
    s3.put_object(Bucket="microscope", Key="new/readme.txt", Body=b"notes")
    params = {
        "images": "s3://microscope/new",
        "out": str(tmp_path / "out"),
        "model": model,
        "overrides": {"data.s3_endpoint_url": s3_server},
    }
    first = segment_new_images(params)
    assert sorted(Path(p).name for p in first["segmented"]) == ["a_labels.tif", "b_labels.tif"]
    put("new/c.tif")
    second = segment_new_images(params)
    assert [Path(p).name for p in second["segmented"]] == ["c_labels.tif"]
    assert len(second["skipped"]) == 2


def _half_objects(model, tmp_path):
    """(an untrained network, its card with its foreground threshold at the median probability
    of a random 2-channel field written to tmp_path/in/a.tif, so half the field is objects; that
    field and its normalised image). A field of noise is an empty field: the card's empty-field
    cut is off (``min_field_contrast`` 0), or it would keep none of them."""
    from pipeline.segment.inference import card_maps

    images = tmp_path / "in"
    images.mkdir()
    image = np.random.default_rng(2).integers(0, 4000, (2, 64, 80), np.uint16)
    tifffile.imwrite(images / "a.tif", image)
    torch.manual_seed(0)
    _, card = load_model(model, torch.device("cpu"))
    net = build_model(**card.arch)
    norm = normalise(image.astype(np.float32), card.low_percentile, card.high_percentile)
    prob = card_maps(net.eval(), norm, torch.device("cpu"), card)[0]
    post = replace(card.postprocess, threshold=float(np.median(prob)), min_field_contrast=0.0)
    return net, replace(card, postprocess=post), image, norm


def test_flip_tta_can_be_switched_at_predict_time(model, tmp_path, caplog, monkeypatch):
    """`predict.flip_tta` overrides the card's ``postprocess.flip_tta`` either way: a model
    with flips switched off segments as the same model saved without them, and on as with; a
    card tuned for one pass as well (``postprocess_one_pass``) segments with those settings
    when its flips are switched off. On a CPU without native bf16, a prediction with the flips
    says what they cost and how to switch them off."""
    from pipeline.config import load_config
    from pipeline.evaluate.stage import predict_network

    images = tmp_path / "in"
    net, card, image, norm = _half_objects(model, tmp_path)
    post = replace(card.postprocess, instances="components")
    plain_model, flipped_model = tmp_path / "plain_model", tmp_path / "flipped_model"
    save_model(net, replace(card, postprocess=post), plain_model)
    save_model(net, replace(card, postprocess=replace(post, flip_tta=True)), flipped_model)
    lower = replace(post, threshold=post.threshold - 0.002)  # as if tuned for one pass
    lower_model, tuned_model = tmp_path / "lower_model", tmp_path / "tuned_model"
    save_model(net, replace(card, postprocess=lower), lower_model)
    tuned = replace(card, postprocess=replace(post, flip_tta=True), postprocess_one_pass=lower)
    save_model(net, tuned, tuned_model)
    runs = {
        "plain": (plain_model, None),
        "flipped": (flipped_model, None),
        "on": (plain_model, True),
        "off": (flipped_model, False),
        "lower": (lower_model, None),
        "tuned_off": (tuned_model, False),
    }
    labels, hinted = {}, {}
    monkeypatch.setattr(passes, "cpu_bf16", lambda: False)  # as an AVX2-only CPU answers
    for name, (folder, flip) in runs.items():
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="pipeline.segment.batch"):
            segment_folder(folder, images, tmp_path / name, flip_tta=flip)
        labels[name] = tifffile.imread(tmp_path / name / "a_labels.tif")
        hinted[name] = any("predict.flip_tta: false" in r.getMessage() for r in caplog.records)
    assert hinted == {n: n in ("flipped", "on") for n in runs}
    assert labels["plain"].any() and not np.array_equal(labels["plain"], labels["flipped"])
    np.testing.assert_array_equal(labels["on"], labels["flipped"])
    np.testing.assert_array_equal(labels["off"], labels["plain"])
    assert not np.array_equal(labels["lower"], labels["plain"])
    np.testing.assert_array_equal(labels["tuned_off"], labels["lower"])
    used = {n: pd.read_csv(tmp_path / n / "images.csv")["flip_tta"].item() for n in runs}
    assert used == {n: n in ("flipped", "on") for n in runs}
    # evaluation's predictions take the same override
    sample = Sample("a", "test", norm, image, {"nuclei": np.zeros((64, 80), np.int32)})
    scored = {}
    for name, (folder, flip) in runs.items():
        out = predict_network(folder, [sample], tmp_path / f"eval-{name}", {"u": "network"}, flip)
        scored[name] = tifffile.imread(Path(out["u"]) / "a.tif")
    assert not np.array_equal(scored["plain"], scored["flipped"])
    np.testing.assert_array_equal(scored["on"], scored["flipped"])
    np.testing.assert_array_equal(scored["off"], scored["plain"])
    np.testing.assert_array_equal(scored["tuned_off"], scored["lower"])
    assert load_config(None, {"predict.flip_tta": "false"}).predict.flip_tta is False
    assert load_config(None).predict.flip_tta is None


def test_the_faint_object_and_empty_field_cuts_can_be_switched_at_predict_time(model, tmp_path):
    """`predict.min_relative_intensity` overrides the card's: 0 keeps every object, as a card
    without the cut does, and images.csv says which cut drew each image. The same for
    `predict.min_field_contrast`: the field of noise, with the card's empty-field cut (2), keeps
    none of the untrained network's objects, and images.csv counts them as dropped; with 0, all."""
    from pipeline.config import load_config
    from pipeline.segment.inference import card_maps

    net, card, _, norm = _half_objects(model, tmp_path)
    dist = card_maps(net.eval(), norm, torch.device("cpu"), card)[1]
    many = dict(seed_h=0.0, seed_shape=0.0, seed_threshold=float(np.median(dist)))
    post = replace(card.postprocess, min_relative_size=0.0, min_object_size=5, **many)
    card = replace(card, postprocess=post)  # seeds at the untrained distance's median: objects
    strict = replace(card, postprocess=replace(post, min_relative_intensity=0.99))
    guarded = replace(card, postprocess=replace(post, min_field_contrast=2.0))
    save_model(net, card, tmp_path / "plain_model")
    save_model(net, strict, tmp_path / "strict_model")
    save_model(net, guarded, tmp_path / "guarded_model")
    runs = {
        "plain": ("plain_model", {}),
        "card": ("strict_model", {}),
        "kept": ("strict_model", {"min_relative_intensity": 0.0}),
        "empty": ("guarded_model", {}),
        "unguarded": ("guarded_model", {"min_field_contrast": 0.0}),
    }
    labels, used, dropped = {}, {}, {}
    for name, (folder, cuts) in runs.items():
        result = segment_folder(tmp_path / folder, tmp_path / "in", tmp_path / name, **cuts)
        assert result.emptied == (["a.tif"] if name == "empty" else []), name
        labels[name] = tifffile.imread(tmp_path / name / "a_labels.tif")
        row = pd.read_csv(tmp_path / name / "images.csv").iloc[0]
        used[name] = (row["min_relative_intensity"], row["min_field_contrast"])
        dropped[name] = row["dropped_as_empty"]
    assert used == {
        "plain": (0.0, 0.0),
        "card": (0.99, 0.0),
        "kept": (0.0, 0.0),
        "empty": (0.0, 2.0),
        "unguarded": (0.0, 0.0),
    }
    assert pd.read_csv(tmp_path / "kept" / "images.csv")["n_objects"].dtype.kind == "i"
    assert 1 < labels["card"].max() < labels["kept"].max()
    np.testing.assert_array_equal(labels["kept"], labels["plain"])
    assert labels["empty"].max() == 0
    np.testing.assert_array_equal(labels["unguarded"], labels["plain"])
    # images.csv tells the field the cut emptied from one the network found nothing in
    assert dropped == dict.fromkeys(runs, 0) | {"empty": labels["plain"].max()}
    assert (
        load_config(None, {"predict.min_relative_intensity": "0"}).predict.min_relative_intensity
        == 0
    )
    assert load_config(None).predict.min_relative_intensity is None
    assert load_config(None, {"predict.min_field_contrast": "0"}).predict.min_field_contrast == 0
    assert load_config(None).predict.min_field_contrast is None


@pytest.mark.slow  # a U-Net's compile: about 20 s on 2 cores
def test_a_compiled_network_segments_a_folder_as_the_eager_one(tmp_path, caplog):
    # an untrained network's probabilities sit near 0.5, where bf16 rounding flips pixels
    # across the threshold; its head scaled up, they stand clear of it, as a trained one's do
    card = ModelCard("resnet18", 2, ["foreground", "distance"], ["c1", "c5"], "cells", "c5", 1, 99)
    torch.manual_seed(0)
    net, model = build_model(**card.arch), str(tmp_path / "model")
    with torch.no_grad():
        net.segmentation_head[0].weight.mul_(30)
    save_model(net, card, model)
    images = tmp_path / "in"
    images.mkdir()
    rng = np.random.default_rng(2)
    for name in "abc":  # one size, mirrored out to 96 x 96: compiled once
        tifffile.imwrite(images / f"{name}.tif", rng.integers(0, 4000, (2, 64, 80), np.uint16))
    eager = segment_folder(model, images, tmp_path / "eager", workers=0)
    with caplog.at_level(logging.INFO, logger="pipeline.segment.compiled"):
        fast = segment_folder(model, images, tmp_path / "fast", workers=0, compile=True)
    said = [r.getMessage() for r in caplog.records if r.name == "pipeline.segment.compiled"]
    assert said == ["compiling the network for input (1, 2, 96, 96) (once per shape)"], said
    for one, other in zip(eager.segmented, fast.segmented, strict=True):  # bf16 rounding apart
        assert (tifffile.imread(one) == tifffile.imread(other)).mean() > 0.99, Path(one).name
    counts = [pd.read_csv(r.table)["n_objects"].tolist() for r in (eager, fast)]
    assert counts[0] == counts[1]


def test_images_of_one_size_go_through_the_network_together(model, tmp_path, monkeypatch):
    from pipeline.segment import inference, passes

    images = tmp_path / "in"
    images.mkdir()
    rng = np.random.default_rng(3)
    for name in "abcdefg":  # d another size: steps of a-c, d, e-g (at most 3), then h alone
        size = (2, 72, 96) if name == "d" else (2, 64, 80)
        tifffile.imwrite(images / f"{name}.tif", rng.integers(0, 4000, size, np.uint16))
    sizes = []  # each network step's images

    def counted(model, images, *args, **kwargs):
        sizes.append(len(images))
        return network_batch(model, images, *args, **kwargs)

    network_batch = passes.network_batch
    for module in (inference, passes):  # card_maps_batch's and network_maps' (one field)
        monkeypatch.setattr(module, "network_batch", counted)
    one = segment_folder(model, images, tmp_path / "one", workers=0)
    assert sizes == [1] * 7  # on a CPU one at a time by default
    sizes.clear()
    steps = segment_folder(model, images, tmp_path / "steps", workers=0, images_per_step=3)
    assert sizes == [3, 1, 3]
    for a, b in zip(one.segmented, steps.segmented, strict=True):
        assert Path(a).name == Path(b).name  # in order
        assert (tifffile.imread(a) == tifffile.imread(b)).mean() > 0.999, Path(a).name
    counts = [pd.read_csv(r.table)["n_objects"].tolist() for r in (one, steps)]
    assert counts[0] == counts[1]
    # with workers, and images segmented before skipped inside a step: b and f
    out = tmp_path / "once"
    for name in "bf":
        os.link(images / f"{name}.tif", tmp_path / f"{name}.tif")
    (tmp_path / "first").mkdir()
    for name in "bf":
        os.replace(tmp_path / f"{name}.tif", tmp_path / "first" / f"{name}.tif")
    segment_folder(model, tmp_path / "first", out, once=True, workers=0)
    sizes.clear()
    tifffile.imwrite(images / "h.tif", rng.integers(0, 4000, (2, 64, 80), np.uint16))
    again = segment_folder(model, images, out, once=True, workers=2, images_per_step=3)
    assert sizes == [2, 1, 3]  # a c | d | e g h
    assert sorted(Path(p).name for p in again.skipped) == ["b.tif", "f.tif"]
    assert [Path(p).name for p in again.segmented] == [f"{n}_labels.tif" for n in "acdegh"]
    for name in "acdeg":
        labels = tifffile.imread(out / f"{name}_labels.tif")
        assert (labels == tifffile.imread(tmp_path / "one" / f"{name}_labels.tif")).mean() > 0.999
    assert sorted(pd.read_csv(again.table)["image"]) == [f"{n}.tif" for n in "abcdefgh"]


def test_one_channel_of_an_image_is_picked_along_its_smaller_axis():
    from pipeline.segment.fields import as_chw

    card = ModelCard("resnet18", 1, ["foreground", "distance"], ["fluo"], "nuclei", "fluo", 1, 99)
    a, b, c = (np.full((6, 8), v, np.uint16) for v in (1, 2, 3))
    where = Path("x.tif")
    assert (as_chw(np.dstack([a, b, c]), where, card, 1) == b).all()  # (H, W, C)
    assert (as_chw(np.stack([a, b, c]), where, card, 2) == c).all()  # (C, H, W)
    assert (as_chw(a, where, card, 0) == a).all()  # a grey image has channel 0
    assert as_chw(np.dstack([a, b, c]), where, card).shape == (1, 6, 8)  # colour: intensity
    with pytest.raises(DataError, match=r"x.tif: shape \(6, 8\) has 1 channel\(s\), .*use 0..0"):
        as_chw(a, where, card, 1)
    two = replace(card, channels=["c1", "c5"], channel="c5", in_channels=2)
    with pytest.raises(DataError, match="this model reads 2"):
        as_chw(np.stack([a, b]), where, two, 0)
    stack = np.stack([a] * 12)  # 12 time points or z slices, not channels
    with pytest.raises(DataError, match=r"x.tif: shape \(12, 6, 8\).*one image per plane"):
        as_chw(stack, where, card)
