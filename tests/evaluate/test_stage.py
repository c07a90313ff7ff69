"""Evaluate stage on the tiny demo (BBBC020 layout): outputs, the notebook score beside the
instance metrics, `evaluate_folder`, the border policy and the validation links."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import ConfigError
from pipeline.conventions import safe_name
from pipeline.errors import DataError
from pipeline.evaluate.metrics import SUMMARY_METRICS, foreground_iou
from pipeline.evaluate.stage import evaluate_folder, predict_network
from pipeline.io import read_tif, write_tif
from pipeline.preprocess.samples import load_split
from pipeline.segment.classical import REFERENCE_METHODS
from tests.conftest import make_cfg
from tests.demo_eval import evaluate_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_root):
    tmp = tmp_path_factory.mktemp("evaluate")
    cfg = make_cfg(tmp, **{"data.source": str(demo_root)})
    validation = {
        "passed": True,
        "failures": [],
        "warnings": ["mask_coverage_in_range"],
        "result_json": str(tmp / "run" / "validate" / "result.json"),
        "data_docs": str(tmp / "run" / "validate" / "data_docs" / "index.html"),
    }
    return cfg, evaluate_demo(cfg, tmp / "run", validation)


def test_demo_reference_methods_scored_with_notebook_definition(demo):
    cfg, ev = demo
    summary = ev.result.summary
    assert list(summary) == [*REFERENCE_METHODS, "watershed"]
    for method, values in summary.items():
        assert set(SUMMARY_METRICS) <= set(values), method
        assert all(np.isfinite(v) for v in values.values()), method
    # notebook_iou is the notebook's pooled whole-image foreground IoU: recompute it directly.
    table = pd.read_csv(ev.result.metrics_csv)
    n_test = ev.prepared.counts["test"]
    assert len(table) == len(summary) * n_test
    for s in load_split(ev.prepared.uri, "test"):
        pred = read_tif(Path(ev.predictions["otsu"]) / f"{safe_name(s.field_id)}.tif")
        row = table[(table.method == "otsu") & (table.field_id == s.field_id)].iloc[0]
        assert row["notebook_iou"] == pytest.approx(foreground_iou(pred, s.labels["cells"]))
    assert summary["watershed"]["f1"] > summary["otsu"]["f1"] + 0.3


def test_summary_json_states_policy_split_and_dataset(demo):
    cfg, ev = demo
    data = json.loads(Path(ev.result.summary_json).read_text())
    assert data["methods"] == ev.result.summary
    assert data["border_policy"] == "ignore_border_predictions"
    assert "touching the image edge" in data["border_policy_text"]
    assert data["dataset_id"] == ev.dataset.dataset_id
    assert data["split_strategy"] == "stratified"
    assert data["test_fields"] and all(f in data["split_text"] for f in data["test_fields"])
    assert set(data["ap_curve"]["watershed"]) == {f"ap_{t}" for t in range(50, 100, 5)}


def test_pictures_and_report_are_written(demo):
    cfg, ev = demo
    out = Path(ev.result.report_html).parent
    test_ids = [s.field_id for s in load_split(ev.prepared.uri, "test")]
    for method in ev.result.summary:
        for fid in test_ids:
            png = out / "overlays" / method / f"{safe_name(fid)}.png"
            assert png.stat().st_size > 1000, png
    figures = {p.name for p in (out / "figures").glob("*.png")}
    assert {"per_image.png", "ap_curve.png", f"compare_{safe_name(test_ids[0])}.png"} <= figures
    page = Path(ev.result.report_html).read_text()
    assert "<table id='summary'>" in page and page.count("data:image/png;base64,") >= 3
    assert ev.dataset.dataset_id in page and "ignore_border_predictions" in page
    assert all(fid in page for fid in test_ids)
    # Validation artefacts are linked relative to the report, so the run folder can move.
    assert "href='../validate/result.json'" in page
    assert "href='../validate/data_docs/index.html'" in page
    assert "src='/" not in page and "http" not in page.split("<h2>Configuration")[0]


def test_best_value_is_bold_and_error_metrics_prefer_low(demo):
    from pipeline.evaluate.report import summary_table

    html = summary_table(
        {
            "a": {"f1": 0.9, "abs_count_error": 3.0, "count_error": -3.0},
            "b": {"f1": 0.5, "abs_count_error": 1.0, "count_error": 1.0},
        }
    )
    rows = html.split("<tr>")
    assert "<b>0.9000</b>" in rows[2] and "<b>1.0000</b>" in rows[3]
    assert "<b>3.0000</b>" not in html and "<b>-3.0000</b>" not in html


def test_evaluate_folder_matches_evaluate(demo, tmp_path):
    cfg, ev = demo
    predictions = ev.run_dir / "predictions"  # one sub-folder per method
    for source in (ev.dataset.uri, ev.prepared.uri, str(ev.run_dir)):
        res = evaluate_folder(str(predictions), source, cfg, str(tmp_path / "out"))
        assert set(res.summary) == set(ev.result.summary)
        # a prepared folder names the dataset it was made from, without its run's state
        assert json.loads(Path(res.summary_json).read_text())["dataset_id"] == ev.dataset.dataset_id
        for m, values in res.summary.items():
            for k, v in values.items():
                assert v == pytest.approx(ev.result.summary[m][k]), (source, m, k)
    data = json.loads(Path(res.summary_json).read_text())
    assert data["predictions"] == str(predictions) and data["split"] == "test"


def test_evaluate_folder_scores_binary_masks_named_by_field(demo, tmp_path):
    cfg, ev = demo
    folder = tmp_path / "my_masks"
    for s in load_split(ev.prepared.uri, "test"):
        otsu = read_tif(Path(ev.predictions["otsu"]) / f"{safe_name(s.field_id)}.tif")
        write_tif(folder / f"{s.field_id}.tif", ((otsu > 0) * 255).astype(np.uint8))
    res = evaluate_folder(str(folder), ev.dataset.uri, cfg, str(tmp_path / "out"))
    assert list(res.summary) == ["my_masks"]
    assert res.summary["my_masks"]["f1"] == pytest.approx(ev.result.summary["otsu"]["f1"])


def test_evaluate_folder_scores_png_label_images_as_cellpose_writes_them(demo, tmp_path):
    from PIL import Image

    cfg, ev = demo
    folder, lossy = tmp_path / "cellpose", tmp_path / "jpeg"
    folder.mkdir()
    lossy.mkdir()
    for s in load_split(ev.prepared.uri, "test"):
        name = safe_name(s.field_id)
        labels = read_tif(Path(ev.predictions["watershed"]) / f"{name}.tif").astype(np.uint16)
        Image.fromarray(labels).save(folder / f"{name}_labels.png")  # 16-bit PNG
        Image.fromarray((labels > 0).astype(np.uint8) * 255).save(lossy / f"{name}.jpg")
    res = evaluate_folder(str(folder), ev.dataset.uri, cfg, str(tmp_path / "out"))
    for metric in ("fg_iou", "f1", "map", "aji"):
        assert res.summary["cellpose"][metric] == pytest.approx(
            ev.result.summary["watershed"][metric]
        )
    with pytest.raises(DataError, match="no label images.*JPEG changes labels"):
        evaluate_folder(str(lossy), ev.dataset.uri, cfg, str(tmp_path / "out2"))
    first = sorted(folder.iterdir())[0]
    Image.open(first).convert("RGB").save(first)  # a label image exported as colour
    with pytest.raises(DataError, match="a colour image, not a label image"):
        evaluate_folder(str(folder), ev.dataset.uri, cfg, str(tmp_path / "out3"))


def test_evaluate_folder_reports_missing_and_misshaped_predictions(demo, tmp_path):
    cfg, ev = demo
    test_ids = [s.field_id for s in load_split(ev.prepared.uri, "test")]
    folder = tmp_path / "preds"
    write_tif(folder / f"{safe_name(test_ids[0])}.tif", np.zeros((5, 5), np.uint16))
    with pytest.raises(DataError, match=r"prediction shape \(5, 5\) != ground-truth shape"):
        evaluate_folder(str(folder), ev.dataset.uri, cfg, str(tmp_path / "out"))
    (folder / f"{safe_name(test_ids[0])}.tif").unlink()
    write_tif(folder / "other.tif", np.zeros((5, 5), np.uint16))
    with pytest.raises(DataError, match=f"no prediction for field '{test_ids[0]}'"):
        evaluate_folder(str(folder), ev.dataset.uri, cfg, str(tmp_path / "out"))
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DataError, match="no label images"):
        evaluate_folder(str(tmp_path / "empty"), ev.dataset.uri, cfg, str(tmp_path / "out2"))


def test_crop_policy_is_stated_and_checked(demo, tmp_path):
    cfg, ev = demo
    crop = make_cfg(
        tmp_path,
        **{
            "data.source": cfg.data.source,
            "evaluate.border_policy": "crop",
            "evaluate.border_margin": 10,
        },
    )
    res = evaluate_folder(
        str(ev.run_dir / "predictions"), ev.dataset.uri, crop, str(tmp_path / "o")
    )
    data = json.loads(Path(res.summary_json).read_text())
    assert data["border_policy"] == "crop" and "10 px" in data["border_policy_text"]
    assert "10 px" in Path(res.report_html).read_text()
    with pytest.raises(ConfigError, match="crop needs a margin > 0"):
        make_cfg(tmp_path, **{"evaluate.border_policy": "crop"})
    with pytest.raises(ConfigError, match="border_margin=20 with border_policy='none'"):
        make_cfg(tmp_path, **{"evaluate.border_policy": "none", "evaluate.border_margin": 20})
    with pytest.raises(ConfigError, match="evaluate.border_policy='edge' is not valid"):
        make_cfg(tmp_path, **{"evaluate.border_policy": "edge"})


def test_labels_only_dataset_scores_predictions(shared_data, tmp_path):
    """The real BBBC020 nuclei archive alone (no images) can score a folder of predictions."""
    import zipfile

    import pandas as pd
    import tifffile

    from pipeline.conventions import safe_name
    from pipeline.evaluate.stage import evaluate_folder
    from pipeline.ingest.dataset import ingest
    from tests.conftest import make_cfg

    with zipfile.ZipFile(shared_data / "bbbc020" / "BBBC020_v1_outlines_nuclei.zip") as zf:
        zf.extractall(tmp_path / "raw")
    cfg = make_cfg(
        tmp_path,
        **{
            "data.source": str(tmp_path / "raw"),
            "data.target": "nuclei",
            "evaluate.report_overlays": 1,
        },
    )
    uri = ingest(cfg).uri
    manifest = pd.read_csv(f"{uri}/manifest.csv", keep_default_na=False)
    preds = tmp_path / "perfect"
    preds.mkdir()
    for row in manifest[manifest["split"] == "test"].itertuples():
        tifffile.imwrite(
            preds / f"{safe_name(row.field_id)}.tif", tifffile.imread(f"{uri}/{row.nuclei_path}")
        )
    result = evaluate_folder(str(preds), uri, cfg, str(tmp_path / "scores"))
    assert result.summary["perfect"]["f1"] == 1.0 and result.summary["perfect"]["aji"] == 1.0


def test_the_network_is_scored_on_images_normalised_as_its_card_says(tmp_path):
    from pipeline.preprocess.samples import Sample, normalise
    from pipeline.segment.artifact import save_model
    from pipeline.segment.card import ModelCard
    from pipeline.segment.network import build_model

    card = ModelCard("resnet18", 1, ["foreground", "distance"], ["fluo"], "nuclei", "fluo", 1, 99)
    card.normalisation = "rank"
    save_model(build_model(**card.arch), card, tmp_path / "model")
    raw = np.random.default_rng(0).integers(0, 4000, (1, 64, 80)).astype(np.uint16)
    labels = {"nuclei": np.zeros((64, 80), np.int32)}
    written = {}
    for how in ("rank", "percentile"):  # a run configured otherwise than the model was trained
        sample = Sample("f1", "test", normalise(raw, 1, 99, how), raw, labels)
        out = predict_network(tmp_path / "model", [sample], tmp_path / how, {"unet": "network"})
        written[how] = read_tif(Path(out["unet"]) / "f1.tif")
    np.testing.assert_array_equal(written["rank"], written["percentile"])


@pytest.mark.parametrize("flips", [False, True])
def test_a_model_with_flips_is_scored_with_one_pass_too(demo, tmp_path, flips):
    """Evaluation scores the network's own instances (`unet`) and its classical split; a card
    with flip TTA also with one pass (`unet_one_pass`, what `predict.flip_tta: false` gives:
    the settings the card holds for one pass)."""
    from dataclasses import replace

    from pipeline.config import PostprocessConfig
    from pipeline.evaluate.reference import load_reference
    from pipeline.evaluate.stage import evaluate
    from pipeline.rundir import RunDir
    from pipeline.segment.artifact import save_model
    from pipeline.segment.card import ModelCard
    from pipeline.segment.network import build_model

    cfg, ev = demo
    channels = ev.prepared.channels
    card = ModelCard(
        "resnet18",
        len(channels),
        ["foreground", "distance"],
        channels,
        "cells",
        channels[0],
        1,
        99.8,
        PostprocessConfig(flip_tta=flips),
    )
    one = replace(card.postprocess, flip_tta=False, threshold=0.45)
    card = replace(card, postprocess_one_pass=one if flips else None)
    save_model(build_model(**card.arch), card, tmp_path / "model")
    run = RunDir(tmp_path / "run")
    result = evaluate(ev.prepared.uri, {}, cfg, run, str(tmp_path / "model"))
    assert set(result.summary) == {"unet", "unet_watershed"} | (
        {"unet_one_pass"} if flips else set()
    )
    if flips:
        samples, _ = load_reference(ev.prepared.uri, cfg, "test")
        out = predict_network(
            tmp_path / "model", samples, tmp_path / "off", {"u": "network"}, False
        )
        for s in samples:
            name = f"{safe_name(s.field_id)}.tif"
            np.testing.assert_array_equal(
                read_tif(run.predictions_root / "unet_one_pass" / name),
                read_tif(Path(out["u"]) / name),
            )
