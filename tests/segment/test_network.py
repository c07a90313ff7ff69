import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.segment.network import build_model, for_inference, resolve_device


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


def test_for_inference_folds_batchnorm_and_gives_the_same_maps_at_any_size():
    torch.manual_seed(0)
    model = build_model("resnet18", in_channels=1, classes=2)
    for m in model.modules():  # statistics and affine terms as after training, not identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    keys = list(model.state_dict())
    fast = for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert list(model.state_dict()) == keys  # the original, which is what gets saved, is intact
    for shape in [(1, 1, 64, 96), (2, 1, 160, 96)]:
        x = torch.rand(shape)
        with torch.no_grad():
            torch.testing.assert_close(fast(x), model(x), atol=1e-4, rtol=1e-4)


def test_for_inference_runs_a_network_it_cannot_trace_as_it_is():
    class Branchy(torch.nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x  # data-dependent control flow: fx cannot trace it

    model = Branchy()
    assert for_inference(model) is model
