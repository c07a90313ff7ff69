"""The train stage: a model folder (weights + card) usable for prediction, a checkpoint every
epoch, and a killed training that resumes from its last epoch (and never from another's)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from pipeline.errors import DataError
from pipeline.ingest.dataset import ingest
from pipeline.io import sha256_file
from pipeline.preprocess.prepare import preprocess
from pipeline.preprocess.samples import load_split
from pipeline.rundir import RunDir
from pipeline.segment.artifact import load_model
from pipeline.segment.card import ModelCard
from pipeline.segment.inference import predict_folder, predict_labels
from pipeline.train.stage import train
from tests.conftest import REPO, TINY, make_cfg


@pytest.fixture
def prepared(tiny_cfg, tmp_path):
    ref = ingest(tiny_cfg)
    return preprocess(ref.uri, tiny_cfg, RunDir(tmp_path / "run").preprocess)


def test_train_writes_a_model_folder_and_a_checkpoint_and_predicts(prepared, tiny_cfg, tmp_path):
    """The card's flip TTA on, so the tuning after training also chooses for one pass."""
    run = RunDir(tmp_path / "run")
    tiny_cfg.postprocess.flip_tta = True
    result = train(prepared.uri, tiny_cfg, run, prepared.channels)
    assert result.device == "cpu" and 0 <= result.val_fg_iou <= 1 and result.resumed_from == 0
    assert result.checkpoint == str(run.checkpoint) and result.model_dir == str(run.model)
    ckpt = torch.load(result.checkpoint, weights_only=True)  # plain tensors and values
    assert {"model", "optimizer", "scheduler", "state", "identity", "card"} <= set(ckpt)
    card = ModelCard.from_dict(ckpt["card"])
    assert card.encoder == "resnet18" and card.outputs == ["foreground", "distance"]
    assert card.channels == ["c1", "c5"] and card.target == "cells" and card.channel == "c1"
    assert result.model_id == sha256_file(Path(result.model_dir) / "weights.safetensors")
    model, card = load_model(result.model_dir)
    assert card.postprocess.flip_tta and card.postprocess_one_pass.flip_tta is False
    sample = load_split(prepared.uri, "test")[0]
    for instances in ("network", "watershed", "components"):
        labels = predict_labels(model, sample.image, torch.device("cpu"), card, instances)
        assert labels.shape == sample.image.shape[1:] and labels.dtype == np.int32
    # predict on a folder of new (C, H, W) images
    images = tmp_path / "new"
    images.mkdir()
    tifffile.imwrite(images / "a.tif", sample.raw)
    tifffile.imwrite(images / "b.tif", np.moveaxis(sample.raw, 0, -1))  # (H, W, C) works too
    written = predict_folder(result.model_dir, str(images), str(tmp_path / "out"))
    assert [tifffile.imread(w).shape for w in written] == [sample.raw.shape[1:]] * 2
    with pytest.raises(DataError, match="no such folder or image file"):
        predict_folder(result.model_dir, str(tmp_path / "nope"), str(tmp_path / "out"))


KILLER = """
import json, os, signal, sys
from pathlib import Path
import pipeline.train.stage as stage
from pipeline.config import load_config
from pipeline.rundir import RunDir
real = stage._save_epoch
def save_then_die(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # killed right after the first epoch was saved
stage._save_epoch = save_then_die
cfg = load_config(None, json.loads(sys.argv[1]))
stage.train(sys.argv[2], cfg, RunDir(Path(sys.argv[3])), ["c1", "c5"], "ds")
"""


def test_a_killed_training_resumes_from_its_last_epoch(prepared, demo_root, tmp_path):
    overrides = {**TINY, "data.source": str(demo_root), "train.epochs": 2, "train.workers": 0}
    cfg = make_cfg(tmp_path, **overrides)
    run = RunDir(tmp_path / "run")
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    args = [json.dumps(overrides), prepared.uri, str(run.root)]
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -9, proc.stderr[-3000:]  # really killed
    ckpt = torch.load(run.checkpoint, weights_only=True)
    assert ckpt["state"]["epoch"] == 0
    for epoch in ckpt["state"]["history"]:  # as written before epochs recorded their val mAP
        assert 0 <= epoch.pop("val_map") <= 1
    torch.save(ckpt, run.checkpoint)
    result = train(prepared.uri, cfg, run, prepared.channels, "ds")
    assert result.resumed_from == 1 and result.epochs_run == 2
    state = torch.load(run.checkpoint, weights_only=True)["state"]
    assert state["epoch"] == 1
    assert state["history"][0]["val_map"] is None and 0 <= state["history"][1]["val_map"] <= 1
    assert not (run.train / ".atomic").exists()  # no temporary checkpoint left behind
    # The same run folder with another setting or dataset is never resumed.
    other = make_cfg(tmp_path, **{**overrides, "train.lr": 0.01})
    with pytest.raises(DataError, match="belongs to another training"):
        train(prepared.uri, other, run, prepared.channels, "ds")
    with pytest.raises(DataError, match="belongs to another training"):
        train(prepared.uri, cfg, run, prepared.channels, "another-dataset")
    # More epochs or another patience only decide when it stops: the same training goes on.
    longer = make_cfg(tmp_path, **{**overrides, "train.epochs": 3, "train.patience": 5})
    result = train(prepared.uri, longer, run, prepared.channels, "ds")
    assert result.resumed_from == 2 and result.epochs_run == 3
