import numpy as np
import pytest
import torch

from pipeline.ingest import ingest
from pipeline.io import DataError
from pipeline.predict import build_model, load_model, predict_folder, predict_labels
from pipeline.preprocess import load_split, preprocess
from pipeline.train import dice_bce_loss, random_batch, train


@pytest.fixture
def prepared(tiny_cfg, tmp_path):
    ref = ingest(tiny_cfg)
    return preprocess(ref.uri, tiny_cfg, str(tmp_path / "run"))


def test_random_batch_shapes(prepared):
    samples = load_split(prepared.uri, "train")
    x, y = random_batch(samples, "cells", 64, 3, np.random.default_rng(0))
    assert x.shape == (3, 2, 64, 64) and x.dtype == torch.float32
    assert y.shape == (3, 1, 64, 64) and set(torch.unique(y).tolist()) <= {0.0, 1.0}


def test_loss_is_lower_for_right_answer():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1
    good, bad = (target * 20 - 10), (10 - target * 20)
    assert dice_bce_loss(good, target) < dice_bce_loss(bad, target)


def test_unknown_encoder_lists_valid_ones():
    with pytest.raises(ValueError, match="resnet18"):
        build_model("resnet-does-not-exist", 2, 1)


def test_train_writes_full_checkpoint_and_predicts(prepared, tiny_cfg, tmp_path):
    result = train(prepared.uri, tiny_cfg, str(tmp_path / "run"), prepared.channels)
    assert result.device == "cpu" and 0 <= result.val_fg_iou <= 1
    ckpt = torch.load(result.checkpoint, weights_only=False)
    assert {"model", "optimizer", "config", "epoch", "arch", "channels", "target"} <= set(ckpt)
    assert ckpt["config"]["train"]["encoder"] == "resnet18" and ckpt["channels"] == ["c1", "c5"]
    model, ckpt = load_model(result.checkpoint)
    sample = load_split(prepared.uri, "test")[0]
    for instances in ("watershed", "components"):
        ckpt["config"]["train"]["instances"] = instances
        labels = predict_labels(model, sample.image, torch.device("cpu"), ckpt)
        assert labels.shape == sample.image.shape[1:] and labels.dtype == np.int32
    # predict on a folder of new (C, H, W) images
    import tifffile

    images = tmp_path / "new"
    images.mkdir()
    tifffile.imwrite(images / "a.tif", sample.raw)
    tifffile.imwrite(images / "b.tif", np.moveaxis(sample.raw, 0, -1))  # (H, W, C) works too
    written = predict_folder(result.checkpoint, str(images), str(tmp_path / "out"))
    assert [tifffile.imread(w).shape for w in written] == [sample.raw.shape[1:]] * 2
    with pytest.raises(DataError, match="folder does not exist"):
        predict_folder(result.checkpoint, str(tmp_path / "nope"), str(tmp_path / "out"))
