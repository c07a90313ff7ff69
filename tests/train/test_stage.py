"""The train stage: a model folder (weights + card) usable for prediction, and a full training
checkpoint."""

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


@pytest.fixture
def prepared(tiny_cfg, tmp_path):
    ref = ingest(tiny_cfg)
    return preprocess(ref.uri, tiny_cfg, RunDir(tmp_path / "run").preprocess)


def test_train_writes_full_checkpoint_and_predicts(prepared, tiny_cfg, tmp_path):
    result = train(prepared.uri, tiny_cfg, RunDir(tmp_path / "run"), prepared.channels)
    assert result.device == "cpu" and 0 <= result.val_fg_iou <= 1
    assert result.checkpoint == str(RunDir(tmp_path / "run").checkpoint)
    ckpt = torch.load(result.checkpoint, weights_only=True)  # plain tensors and values
    assert {"model", "optimizer", "config", "epoch", "card"} <= set(ckpt)
    card = ModelCard.from_dict(ckpt["card"])
    assert ckpt["config"]["train"]["encoder"] == card.encoder == "resnet18"
    assert card.channels == ["c1", "c5"] and card.target == "cells" and card.channel == "c1"
    assert result.model_dir == str(RunDir(tmp_path / "run").model)
    assert result.model_id == sha256_file(Path(result.model_dir) / "weights.safetensors")
    model, card = load_model(result.model_dir)
    sample = load_split(prepared.uri, "test")[0]
    for instances in ("watershed", "components"):
        labels = predict_labels(model, sample.image, torch.device("cpu"), card, instances)
        assert labels.shape == sample.image.shape[1:] and labels.dtype == np.int32
    # predict on a folder of new (C, H, W) images
    images = tmp_path / "new"
    images.mkdir()
    tifffile.imwrite(images / "a.tif", sample.raw)
    tifffile.imwrite(images / "b.tif", np.moveaxis(sample.raw, 0, -1))  # (H, W, C) works too
    written = predict_folder(result.model_dir, str(images), str(tmp_path / "out"))
    assert [tifffile.imread(w).shape for w in written] == [sample.raw.shape[1:]] * 2
    with pytest.raises(DataError, match="folder does not exist"):
        predict_folder(result.model_dir, str(tmp_path / "nope"), str(tmp_path / "out"))
