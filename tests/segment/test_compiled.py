"""torch.compile for CPU inference: the eager maps to float rounding, a graph per input shape up
to a limit, and the network run eagerly when compiling fails."""

import logging

import numpy as np
import pytest
import torch

from pipeline.config import PostprocessConfig
from pipeline.segment.compiled import Compiled, compiled
from pipeline.segment.passes import network_maps

CPU = torch.device("cpu")


def small_net() -> torch.nn.Module:
    """A two-convolution network: compiles in seconds, unlike a U-Net."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 3, padding=1)
    )
    return net.eval()


def maps(net: torch.nn.Module, image: np.ndarray, flips: bool = False) -> np.ndarray:
    return network_maps(net, image, CPU, PostprocessConfig(flip_tta=flips), "fp32")


def test_compiled_maps_equal_the_eager_ones_and_shapes_past_the_limit_run_eagerly(caplog):
    net = small_net()
    fast = Compiled(net, keep=2)
    rng = np.random.default_rng(0)
    # mirrored out by 8 px or more to multiples of 32: (96, 128), (64, 96), (64, 64)
    images = [rng.random((1, h, w), dtype=np.float32) for h, w in ((64, 96), (30, 60), (32, 32))]
    with caplog.at_level(logging.DEBUG, logger="pipeline.segment.compiled"):
        for image in images:
            for flips in (False, True):  # four passes of one shape per call with flips
                np.testing.assert_allclose(
                    maps(fast, image, flips), maps(net, image, flips), rtol=1e-5, atol=1e-6
                )
        batch = torch.rand(3, 1, 64, 96)  # a batch of tiles: one sample at a time, compiled
        with torch.no_grad():
            torch.testing.assert_close(fast(batch), net(batch), rtol=1e-5, atol=1e-6)
    said = [r.getMessage() for r in caplog.records]
    compiling = [m for m in said if m.startswith("compiling")]
    assert len(compiling) == 2, said  # one per shape, not per call or batch size
    assert any("(1, 1, 64, 64): 2 shapes compiled already, run eagerly" in m for m in said), said
    assert not fast.failed
    assert [f"net.{k}" for k in net.state_dict()] == list(fast.state_dict())  # each weight once


def test_training_gradients_and_other_devices_run_the_network_as_it_is(caplog):
    net = small_net()
    x = torch.rand(1, 1, 16, 16)
    fast = Compiled(net)
    with caplog.at_level(logging.INFO, logger="pipeline.segment.compiled"):
        out = fast(x)  # gradients on: the network itself
        assert out.requires_grad and torch.equal(out, net(x))
        with torch.no_grad():
            fast.train()  # training: the network itself
            assert torch.equal(fast(x), net(x)) and net.training
        assert compiled(net, torch.device("cuda"), True) is net  # a GPU replays CUDA graphs
        assert compiled(net, CPU, False) is net
    assert not [r for r in caplog.records if r.getMessage().startswith("compiling")]
    caplog.clear()
    fast = Compiled(net.eval())  # in the network's mode: compiled without network_maps' eval()
    with torch.no_grad(), caplog.at_level(logging.INFO, logger="pipeline.segment.compiled"):
        assert not fast.training and torch.allclose(fast(x), net(x), atol=1e-6)
    assert [r.getMessage() for r in caplog.records if r.name == "pipeline.segment.compiled"] == [
        "compiling the network for input (1, 1, 16, 16) (once per shape)"
    ]
    with pytest.raises(ValueError, match="keep must be at least 1, got 0"):
        Compiled(net, keep=0)


def test_a_failed_compile_warns_and_the_network_runs_eagerly(caplog):
    import torch._inductor.config as inductor

    net = small_net()
    fast = Compiled(net)
    image = np.random.default_rng(1).random((1, 24, 56), dtype=np.float32)  # a shape of its own
    broken = {"cpp.cxx": ("/nonexistent/c++",), "fx_graph_cache": False}
    with inductor.patch(broken), caplog.at_level(logging.WARNING):
        got = maps(fast, image)
    np.testing.assert_array_equal(got, maps(net, image))
    assert fast.failed
    assert any("torch.compile failed" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(maps(fast, image), got)  # and from then on, eagerly
