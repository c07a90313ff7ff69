import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.segment.network import build_model, resolve_device


def test_unknown_encoder_lists_valid_ones():
    with pytest.raises(ValueError, match="resnet18"):
        build_model("resnet-does-not-exist", 2, 1)


def test_model_maps_channels_to_one_logit_map():
    model = build_model("resnet18", in_channels=2, classes=1).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 2, 64, 96)).shape == (1, 1, 64, 96)


def test_device_auto_is_cpu_here_and_cuda_is_refused_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda")
