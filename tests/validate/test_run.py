"""The validate gate (Great Expectations): one planted defect per dataset copy must be caught by
the right named expectation with the offending field; clean and real datasets pass."""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from pipeline.config import ConfigError, ValidateConfig
from pipeline.errors import DataError
from pipeline.ingest.dataset import ingest
from pipeline.preprocess.prepare import preprocess
from pipeline.rundir import RunDir
from pipeline.validate.run import ValidationFailed, validate
from pipeline.validate.suite import LAYOUT_DEFAULTS, resolve_thresholds
from tests.conftest import make_cfg

STAT_COLUMNS_KEEP = ("field_id", "group", "split", "labelled", "sources")


@pytest.fixture(scope="module")
def clean(tmp_path_factory, demo_root):
    """(config, dataset version folder) of the tiny demo set, ingested once for the module."""
    cfg = make_cfg(tmp_path_factory.mktemp("clean"), **{"data.source": str(demo_root)})
    return cfg, Path(ingest(cfg).uri)


@pytest.fixture
def ds(clean, tmp_path) -> Path:
    """A private copy of the clean dataset version, free to damage."""
    return Path(shutil.copytree(clean[1], tmp_path / "ds"))


def _manifest(ds: Path) -> pd.DataFrame:
    return pd.read_csv(ds / "manifest.csv", keep_default_na=False)


def _train_rows(ds: Path) -> pd.DataFrame:
    m = _manifest(ds)
    return m[(m["split"] == "train") & m["labelled"].astype(bool)]


def _failure(ds: Path, cfg, tmp_path: Path) -> tuple[str, list[str]]:
    """Validate, expect ValidationFailed; return the message and the failed check names."""
    with pytest.raises(ValidationFailed) as err:
        validate(str(ds), cfg, RunDir(tmp_path / "run").validate)
    summary = json.loads((tmp_path / "run" / "validate" / "result.json").read_text())["summary"]
    assert summary["passed"] is False and summary["failures"]
    return str(err.value), summary["failures"]


def _line(message: str, name: str) -> str:
    lines = [ln for ln in message.splitlines() if ln.startswith(f"- {name} [")]
    assert len(lines) == 1, f"no line for {name} in:\n{message}"
    return lines[0]


def test_clean_dataset_passes_and_writes_gx_artifacts(clean, tmp_path, capfd, caplog):
    cfg, uri = clean
    with caplog.at_level(logging.DEBUG):
        result = validate(str(uri), cfg, RunDir(tmp_path / "run").validate)
    summary = result.summary()
    assert summary["passed"] and summary["failures"] == [] and summary["warnings"] == []
    assert set(summary) >= {"dataset_id", "n_checks", "result_json", "data_docs"}
    assert summary["n_checks"] == 30  # 24 shared + 3 per channel (c1, c5)
    out = tmp_path / "run" / "validate"
    saved = json.loads((out / "result.json").read_text())
    assert [r["suite_name"] for r in saved["gx_validation_results"]] == [
        "cellseg.manifest",
        "cellseg.fields",
        "cellseg.objects",
    ]
    assert all(r["success"] for r in saved["gx_validation_results"])
    assert summary["data_docs"] == str(out / "data_docs" / "index.html")
    assert Path(summary["data_docs"]).is_file()
    assert len(list((out / "data_docs" / "validations").rglob("*.html"))) == 3
    # Every check is a named GX expectation marked critical or warning.
    for check in saved["gx_validation_results"][1]["results"]:
        meta = check["expectation_config"]["meta"]
        assert meta["name"] and isinstance(meta["critical"], bool)
    # GX's own console output stays out of task logs.
    captured = capfd.readouterr()
    assert "Calculating Metrics" not in captured.out + captured.err
    assert not [r for r in caplog.records if r.name.startswith("great_expectations")]


@pytest.mark.parametrize(
    "which, how, check",
    [
        ("image", "overwrite", "image_readable"),
        ("image", "truncate", "image_readable"),
        ("cells", "truncate", "masks_readable"),
    ],
)
def test_corrupt_tif_is_caught(ds, clean, tmp_path, which, how, check):
    row = _train_rows(ds).iloc[0]
    rel = row["image_path"] if which == "image" else row["cells_path"]
    data = (ds / rel).read_bytes()
    broken = b"II*\x00 header, then garbage" * 10 if how == "overwrite" else data[: len(data) // 2]
    (ds / rel).write_bytes(broken)
    message, failures = _failure(ds, clean[0], tmp_path)
    assert failures == [check]  # only the root cause: checks needing the file stay null
    line = _line(message, check)
    assert row["field_id"] in line and rel in line and "expect_column_values_to_be_in_set" in line


def test_mask_of_wrong_shape_is_caught(ds, clean, tmp_path):
    row = _train_rows(ds).iloc[0]
    lab = tifffile.imread(ds / row["cells_path"])
    tifffile.imwrite(ds / row["cells_path"], lab[:-8, :-4])
    message, failures = _failure(ds, clean[0], tmp_path)
    assert "mask_shape_matches_image" in failures
    line = _line(message, "mask_shape_matches_image")
    assert (
        row["field_id"] in line and row["cells_path"] in line and "masks_shape_match=False" in line
    )


def test_empty_mask_on_labelled_field_is_caught(ds, clean, tmp_path):
    row = _train_rows(ds).iloc[1]
    lab = tifffile.imread(ds / row["cells_path"])
    tifffile.imwrite(ds / row["cells_path"], np.zeros_like(lab))
    message, failures = _failure(ds, clean[0], tmp_path)
    assert "target_mask_not_empty" in failures
    line = _line(message, "target_mask_not_empty")
    assert row["field_id"] in line and "n_objects=0" in line and "1 <= n_objects" in line


def test_blank_image_is_caught(ds, clean, tmp_path):
    row = _train_rows(ds).iloc[0]
    image = tifffile.imread(ds / row["image_path"])
    tifffile.imwrite(ds / row["image_path"], np.zeros_like(image))
    message, failures = _failure(ds, clean[0], tmp_path)
    assert {"image_not_blank[c1]", "image_not_constant[c1]"} <= set(failures)
    line = _line(message, "image_not_blank[c1]")
    assert row["field_id"] in line and row["image_path"] in line and "c1_std=0" in line
    assert "expected 1 <= c1_std" in line


def test_duplicated_image_is_caught(ds, clean, tmp_path):
    m = _manifest(ds)
    a, b = _train_rows(ds).iloc[0], _train_rows(ds).iloc[1]
    for key in ("image", "cells", "nuclei"):
        shutil.copyfile(ds / a[f"{key}_path"], ds / b[f"{key}_path"])
    stats = [c for c in m.columns if c not in STAT_COLUMNS_KEEP and not c.endswith("_path")]
    m.loc[m["field_id"] == b["field_id"], stats] = a[stats].to_numpy()
    m.to_csv(ds / "manifest.csv", index=False)
    message, failures = _failure(ds, clean[0], tmp_path)
    assert failures == ["images_unique"]  # the copy is otherwise consistent with its manifest
    line = _line(message, "images_unique")
    assert a["field_id"] in line and b["field_id"] in line


def test_overlapping_splits_are_caught(ds, clean, tmp_path):
    m = _manifest(ds)
    row = _train_rows(ds).iloc[0].copy()
    row["split"] = "test"
    pd.concat([m, row.to_frame().T]).to_csv(ds / "manifest.csv", index=False)
    message, failures = _failure(ds, clean[0], tmp_path)
    assert set(failures) == {"splits_disjoint", "field_ids_unique"}
    line = _line(message, "splits_disjoint")
    assert f"{row['field_id']}: field_splits=test+train" in line


def test_empty_split_and_too_few_labelled_fields_are_caught(ds, clean, tmp_path):
    m = _manifest(ds)
    m.loc[m["split"] == "test", "split"] = "val"
    m.to_csv(ds / "manifest.csv", index=False)
    cfg = make_cfg(tmp_path, **{"validate.min_labelled_fields": 50})
    message, failures = _failure(ds, cfg, tmp_path)
    assert {"splits_non_empty", "enough_labelled_fields"} <= set(failures)
    assert "no row with split='test'" in _line(message, "splits_non_empty")
    assert "observed 7; expected 50 <= sum(has_target)" in _line(message, "enough_labelled_fields")


def test_warnings_are_reported_without_failing(clean, tmp_path, caplog):
    cfg = make_cfg(tmp_path, **{"validate.max_saturated_fraction": 0.0, "validate.min_objects": 10})
    with caplog.at_level(logging.WARNING, logger="pipeline.validate"):
        result = validate(str(clean[1]), cfg, RunDir(tmp_path / "run").validate)
    assert result.passed and not result.failures
    assert {"image_not_saturated[c1]", "object_count_in_range"} <= set(result.summary()["warnings"])
    assert any("image_not_saturated[c1]" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "override",
    [{"validate.fail_on_warning": True}, {"validate.severity": "image_not_saturated=critical"}],
)
def test_warnings_can_be_made_critical(clean, tmp_path, override):
    cfg = make_cfg(tmp_path, **{"validate.max_saturated_fraction": 0.0, **override})
    message, failures = _failure(clean[1], cfg, tmp_path)
    assert "image_not_saturated[c1]" in failures


def test_thresholds_come_from_layout_defaults_unless_set():
    assert resolve_thresholds(ValidateConfig(), "ctc") == LAYOUT_DEFAULTS["ctc"]
    assert resolve_thresholds(ValidateConfig(), "bbbc020") == LAYOUT_DEFAULTS["bbbc020"]
    assert resolve_thresholds(ValidateConfig(min_objects=5), "ctc").min_objects == 5
    with pytest.raises(ConfigError, match="min_mask_coverage"):
        resolve_thresholds(ValidateConfig(min_mask_coverage=0.9, max_mask_coverage=0.1), "ctc")


def test_unknown_severity_name_is_a_config_error(clean, tmp_path):
    cfg = make_cfg(tmp_path, **{"validate.severity": "no_such_check=warning"})
    with pytest.raises(ConfigError, match="no_such_check"):
        validate(str(clean[1]), cfg, RunDir(tmp_path / "run").validate)


def test_validate_dataset_writes_into_any_folder(ds, clean, tmp_path):
    out = tmp_path / "report"
    assert validate(str(ds), clean[0], str(out)).passed
    assert (out / "result.json").is_file() and (out / "data_docs" / "index.html").is_file()
    (ds / _train_rows(ds).iloc[0]["image_path"]).write_bytes(b"broken")
    result = validate(str(ds), clean[0], str(out), raise_on_failure=False)
    assert not result.passed and result.summary()["failures"] == ["image_readable"]
    with pytest.raises(ConfigError, match="immutable"):
        validate(str(ds), clean[0], str(ds / "checks"))


@pytest.mark.parametrize("name", ["Fluo-N2DH-GOWT1", "Fluo-N2DL-HeLa"])
def test_real_ctc_sets_pass(shared_data, tmp_path, name):
    source = shared_data / "ctc" / name
    cfg = make_cfg(
        tmp_path, **{"data.layout": "ctc", "data.source": str(source), "data.target": "nuclei"}
    )
    result = validate(ingest(cfg).uri, cfg, RunDir(tmp_path / "run").validate)
    assert result.passed and result.summary()["warnings"] == []


def test_real_bbbc020_nuclei_archive_labels_pass(shared_data, tmp_path):
    """The nuclei archive alone holds masks and no images: a ground-truth-only dataset. Every
    label check passes; missing images are a warning (it can score predictions, not train)
    unless the user makes them critical."""
    with zipfile.ZipFile(shared_data / "bbbc020" / "BBBC020_v1_outlines_nuclei.zip") as zf:
        zf.extractall(tmp_path / "raw")
    cfg = make_cfg(tmp_path, **{"data.source": str(tmp_path / "raw"), "data.target": "nuclei"})
    uri = ingest(cfg).uri
    result = validate(uri, cfg, RunDir(tmp_path / "run").validate)
    assert result.passed and result.summary()["warnings"] == ["fields_have_images"]
    assert json.loads(Path(result.result_json).read_text())["labels_only"] is True
    with pytest.raises(DataError, match="holds labels only"):  # never trains
        preprocess(uri, cfg, RunDir(tmp_path / "run").preprocess)
    strict = make_cfg(
        tmp_path,
        **{
            "data.source": str(tmp_path / "raw"),
            "data.target": "nuclei",
            "validate.severity": "fields_have_images=critical",
        },
    )
    result = validate(uri, strict, str(tmp_path / "strict"), raise_on_failure=False)
    assert result.summary()["failures"] == ["fields_have_images"]


def test_skipped_raw_files_are_counted_in_the_summary(demo_root, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(demo_root, raw)
    victim = sorted((raw / "BBC020_v1_outlines_cells").glob("*.TIF"))[0]
    victim.write_bytes(b"not a tif")  # like the corrupt file in the served nuclei archive
    cfg = make_cfg(tmp_path, **{"data.source": str(raw)})
    ref = ingest(cfg)
    assert ref.n_skipped_files == 1
    summary = validate(ref.uri, cfg, RunDir(tmp_path / "run").validate).summary()
    assert summary["n_skipped_files"] == 1 and victim.name in summary["skipped_files"][0]
