"""CUDA graphs for inference: the same maps as the network run eagerly, recorded per shape."""

import numpy as np
import pytest
import torch

from pipeline.config import PostprocessConfig
from pipeline.segment.graphs import Replayed, replayed
from pipeline.segment.network import build_model, for_inference
from pipeline.segment.passes import network_maps

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def unet(device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return for_inference(build_model("resnet18", in_channels=1, classes=2)).to(device)


def test_off_a_gpu_the_network_runs_as_it_is():
    model = unet("cpu")
    assert replayed(model, torch.device("cpu")) is model
    wrapped = Replayed(model)
    image = np.random.default_rng(0).random((1, 64, 96)).astype(np.float32)
    post = PostprocessConfig()
    for _ in range(3):  # seen often enough, but a CPU input is never recorded
        got = network_maps(wrapped, image, torch.device("cpu"), post, "fp32")
    assert np.array_equal(got, network_maps(model, image, torch.device("cpu"), post, "fp32"))
    assert not wrapped._graphs
    with pytest.raises(ValueError, match="keep=0"):
        Replayed(model, keep=0)


@cuda
def test_replayed_graphs_give_the_eager_maps_and_are_kept_per_shape():
    gpu = torch.device("cuda")
    model = unet("cuda")
    wrapped = Replayed(model, keep=1, after=2)
    rng = np.random.default_rng(1)
    post = PostprocessConfig(flip_tta=True)  # four passes of one shape per call
    for shape in [(1, 128, 160)] * 3 + [(1, 96, 96)] * 3 + [(1, 128, 160)]:
        image = rng.random(shape).astype(np.float32)
        for precision in ("bf16", "fp32"):
            want = network_maps(model, image, gpu, post, precision)
            assert np.array_equal(network_maps(wrapped, image, gpu, post, precision), want)
    assert len(wrapped._graphs) == 1  # keep=1: the last shape's alone
    wrapped.to(torch.float32)  # a storage change drops the graphs
    assert not wrapped._graphs
