"""`cellseg models list | show | promote | rollback | download` and `cellseg predict`'s default
(the production alias), through the real command line on a real registry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from pipeline.cli import main
from pipeline.config import RegistryConfig
from pipeline.registry.versions import Registry
from tests.registry.conftest import register


def _models(capsys, tmp_path, *argv: str):
    code = main(["models", *argv, "--set", f"registry.uri={tmp_path / 'registry'}"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else captured.err.strip())


def test_models_commands_list_show_promote_rollback_download(capsys, tmp_path, model_dir):
    reg = Registry(RegistryConfig(uri=str(tmp_path / "registry")))  # default model name
    register(reg, model_dir, f1=0.7, run_id="r1")
    register(reg, model_dir, f1=0.8, run_id="r2")
    code, rows = _models(capsys, tmp_path, "list")
    assert code == 0 and [(r["version"], r["aliases"], r["test_f1"]) for r in rows] == [
        (2, [], 0.8),
        (1, [], 0.7),
    ]
    assert _models(capsys, tmp_path, "promote", "1", "--reason", "reviewed")[1]["version"] == 1
    assert _models(capsys, tmp_path, "promote", "2")[1]["previous_version"] == 1
    assert _models(capsys, tmp_path, "list")[1][0]["aliases"] == ["production"]
    back = _models(capsys, tmp_path, "rollback")[1]
    assert (back["version"], back["action"]) == (1, "rollback")
    code, shown = _models(capsys, tmp_path, "show", "production")
    assert code == 0 and shown["version"] == 1 and shown["aliases"] == ["production"]
    assert [e["action"] for e in shown["alias_history"]] == ["manual", "rollback"]
    assert shown["alias_history"][0]["reason"] == "reviewed"
    assert shown["model_card_md"].startswith("# cellseg-unet v0001")
    assert "config" not in shown and shown["code_version"] == "abc123"
    code, got = _models(capsys, tmp_path, "download", "production", "--out", str(tmp_path / "d"))
    assert code == 0 and got["version"] == 1
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        "MODEL_CARD.md",
        "card.json",
        "manifest.json",
        "metadata.json",
        "weights.safetensors",
    ]
    code, err = _models(capsys, tmp_path, "download", "2", "--out", str(tmp_path / "d"))
    assert code == 2 and "--out" in err and "is not a new or empty folder" in err
    code, err = _models(capsys, tmp_path, "show", "nightly")
    assert code == 2 and "no version or alias 'nightly'" in err and "models list" in err


def test_predict_uses_the_production_model_by_default(capsys, tmp_path, model_dir):
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    rng = np.random.default_rng(0)
    tifffile.imwrite(images / "a.tif", rng.integers(0, 4000, (1, 96, 120), dtype=np.uint16))
    argv = ["predict", "--images", str(images), "--out", str(out)]
    argv += ["--set", f"registry.uri={tmp_path / 'registry'}"]
    assert main(argv) == 2  # no production model yet: one line saying so
    assert "no version or alias 'production'" in capsys.readouterr().err
    reg = Registry(RegistryConfig(uri=str(tmp_path / "registry")))
    register(reg, model_dir)
    main(["models", "promote", "1", "--set", f"registry.uri={tmp_path / 'registry'}"])
    capsys.readouterr()
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "production"
    written = sorted(p.name for p in out.iterdir())  # labels, overlay, measurements; no model
    assert written == ["a_labels.tif", "a_objects.csv", "a_overlay.png", "images.csv"]
    labels = tifffile.imread(out / "a_labels.tif")
    assert labels.shape == (96, 120) and labels.dtype == np.uint16


@pytest.mark.parametrize("ref", ["7", "v0007"])
def test_unknown_versions_are_one_line_errors(capsys, tmp_path, model_dir, ref):
    register(Registry(RegistryConfig(uri=str(tmp_path / "registry"))), model_dir)
    code, err = _models(capsys, tmp_path, "show", ref)
    assert code == 2 and "no complete version 7 (versions: v0001)" in err


def test_predict_from_an_s3_version_leaves_no_model_copy_in_out(
    capsys, tmp_path, model_dir, s3_server
):
    cfg = RegistryConfig(uri="s3://predict-tests/models", s3_endpoint_url=s3_server)
    register(Registry(cfg), model_dir)
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    tifffile.imwrite(images / "a.tif", np.zeros((1, 64, 64), np.uint16))
    code = main(
        [
            "predict",
            "--model",
            "s3://predict-tests/models/cellseg-unet/v0001",
            "--images",
            str(images),
            "--out",
            str(out),
            "--set",
            f"registry.s3_endpoint_url={s3_server}",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [
        "a_labels.tif",
        "a_objects.csv",
        "a_overlay.png",
        "images.csv",
    ]
    assert not list(out.rglob("*.safetensors"))
