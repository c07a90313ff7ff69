"""`retune` and `cellseg tune`: a model's post-processing chosen again on another dataset's
annotated fields, written as a new model folder; the source untouched; bad input refused."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.cli import main
from pipeline.config import PostprocessConfig, RegistryConfig
from pipeline.errors import ConfigError, DataError
from pipeline.evaluate.reference import load_reference
from pipeline.ingest.dataset import ingest
from pipeline.io import sha256_file
from pipeline.preprocess.prepare import preprocess
from pipeline.preprocess.samples import normalise
from pipeline.registry.versions import Registry
from pipeline.segment.artifact import load_model, read_card, save_model
from pipeline.segment.card import TUNED, ModelCard
from pipeline.segment.network import build_model
from pipeline.train.loop import edge_policy
from pipeline.train.retune import SCORED, retune
from pipeline.train.tune import tune_seed_threshold
from tests.conftest import make_cfg
from tests.registry.conftest import register

# a deliberately poor choice, so that the tuned settings differ from the card's
POOR = PostprocessConfig(threshold=0.9, seed_threshold=0.9, min_relative_size=0.9)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, demo_root):
    """The tiny demo, ingested and prepared: (config, prepared folder, dataset version)."""
    tmp = tmp_path_factory.mktemp("retune")
    cfg = make_cfg(tmp, **{"data.source": str(demo_root)})
    dataset = ingest(cfg)
    ref = preprocess(dataset.uri, cfg, tmp / "prepared")
    return cfg, ref.uri, dataset.uri, ref.channels


def _model(folder: Path, channels: list[str], post: PostprocessConfig, outputs=2) -> Path:
    card = ModelCard(
        "resnet18", len(channels), ["foreground", "distance"][:outputs], channels, "cells",
        channels[0], 1, 99.8, post,
    )  # fmt: skip
    torch.manual_seed(0)
    save_model(build_model(**card.arch), card, folder)
    return folder


def _files(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir())}


def test_a_model_is_tuned_again_into_a_new_folder_and_scored_before_and_after(prepared, tmp_path):
    """The new folder holds the source's weights (same id) and a card whose settings are what
    the tuning after training chooses on those fields (for one pass too, where the card has
    flips and, as cards before 2026-12-07, no one-pass settings); the source is unchanged; the
    test block is scored with both cards. (A card without flips: `cellseg tune` below.)"""
    cfg, uri, _, channels = prepared
    source = _model(tmp_path / "model", channels, dataclasses.replace(POOR, flip_tta=True))
    before = _files(source)
    result = retune(source, uri, cfg, tmp_path / "tuned", ["val"])
    assert _files(source) == before  # the source model as it was
    out = Path(result.model_dir)
    assert _files(out)["weights.safetensors"] == before["weights.safetensors"]
    assert result.model_id == before["weights.safetensors"]
    model, card = load_model(source, torch.device("cpu"))
    fields, _ = load_reference(uri, cfg, "val")
    images = [normalise(s.raw, 1, 99.8) for s in fields]
    gts = [s.labels["cells"] for s in fields]
    policy = edge_policy(not cfg.data.edge_objects_labelled)
    expected = tune_seed_threshold(model, (images, gts), torch.device("cpu"), card, policy)
    tuned = read_card(out)
    assert tuned == expected
    assert tuned.postprocess_one_pass is not None
    assert result.after == {k: getattr(tuned.postprocess, k) for k in TUNED} != result.before
    assert result.before == {k: getattr(POOR, k) for k in TUNED}
    assert result.fields == len(fields) and result.splits == ["val"]
    assert set(result.test_scores) == {"before", "after", "before_one_pass", "after_one_pass"}
    for row in result.test_scores.values():
        assert set(row) == set(SCORED) and all(np.isfinite(v) for v in row.values())


def test_tuning_on_the_test_block_leaves_nothing_to_score_it_with(prepared, tmp_path):
    cfg, uri, _, channels = prepared
    source = _model(tmp_path / "model", channels, PostprocessConfig())
    result = retune(source, uri, cfg, tmp_path / "tuned", ["val", "test"])
    assert result.test_scores == {} and result.splits == ["val", "test"]


def test_bad_requests_are_refused_before_any_work(prepared, tmp_path):
    cfg, uri, _, channels = prepared
    source = _model(tmp_path / "model", channels, PostprocessConfig())
    taken = tmp_path / "taken"
    (taken / "keep.txt").parent.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match=f"--out {taken} is not a new or empty folder"):
        retune(source, uri, cfg, taken)
    assert (taken / "keep.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="splits .'tests'.: choose among train, val, test"):
        retune(source, uri, cfg, tmp_path / "a", ["tests"])
    plain = _model(tmp_path / "plain", channels, PostprocessConfig(), outputs=1)
    with pytest.raises(DataError, match=f"{plain}: the model predicts .'foreground'. only"):
        retune(plain, uri, cfg, tmp_path / "b")
    tests_only = tmp_path / "tests_only"  # a prepared folder of the test block alone
    tests_only.mkdir()
    index = [e for e in json.loads((Path(uri) / "index.json").read_text()) if e["split"] == "test"]
    (tests_only / "index.json").write_text(json.dumps(index))
    for entry in index:
        (tests_only / entry["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(uri) / entry["file"], tests_only / entry["file"])
    with pytest.raises(DataError, match="no train/val fields with cells labels to tune on"):
        retune(source, str(tests_only), cfg, tmp_path / "c")
    one = _model(tmp_path / "one", channels[:1], PostprocessConfig())
    with pytest.raises(DataError, match=f"2 channel.s., the model reads 1 .{channels[0]}."):
        retune(one, uri, cfg, tmp_path / "d", ["val"])
    assert not any((tmp_path / n).exists() for n in "abcd")


def test_cellseg_tune_writes_the_tuned_model_and_says_what_changed(prepared, tmp_path, capsys):
    """From a dataset version (its layout read from it), with a model folder or a registered
    version (named in the output by its ref, not its temporary copy); bad input exits 2 naming
    the fix."""
    _, _, version, channels = prepared
    source = _model(tmp_path / "model", channels, POOR)
    out = tmp_path / "tuned"
    args = ["tune", "--model", str(source), "--dataset", version, "--out", str(out)]
    code = main([*args, "--split", "val"])
    got = json.loads(capsys.readouterr().out)
    assert code == 0 and got["model_dir"] == str(out) and got["splits"] == ["val"]
    assert got["source"] == str(source)
    tuned = read_card(out)
    assert tuned.postprocess != POOR and got["before"] != got["after"]
    assert tuned.postprocess_one_pass is None  # no flips, nothing else to tune
    assert set(got["test_scores"]) == {"before", "after"}
    register(Registry(RegistryConfig(uri=str(tmp_path / "registry"))), source)
    registry = ["--set", f"registry.uri={tmp_path / 'registry'}", "--split", "val"]
    code = main(
        ["tune", "--model", "1", "--dataset", version, "--out", str(tmp_path / "t2"), *registry]
    )
    again = json.loads(capsys.readouterr().out)
    assert code == 0 and again["source"] == "1" and again["after"] == got["after"]
    assert main(args) == 2  # the folder is now taken
    assert "is not a new or empty folder" in capsys.readouterr().err
    assert main([*args[:4], str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--dataset" in err and "does not exist" in err
