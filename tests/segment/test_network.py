import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.segment.network import (
    ARCHITECTURES,
    build_model,
    decoder_step,
    for_inference,
    resolve_device,
)


def test_unknown_encoder_lists_valid_ones():
    with pytest.raises(ValueError, match="resnet18"):
        build_model("resnet-does-not-exist", 2, 1)


def test_unknown_architecture_lists_valid_ones():
    with pytest.raises(ConfigError, match="unet, unet_fullres"):
        build_model("resnet18", 2, 1, architecture="transformer")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_model_maps_channels_to_one_logit_map(architecture):
    model = build_model("resnet18", in_channels=2, classes=1, architecture=architecture).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 2, 64, 96)).shape == (1, 1, 64, 96)


def _pixel_accuracy(architecture: str, steps: int = 40) -> float:
    """Accuracy of a small U-Net trained for `steps` to mark the pixels of random noise above
    0.5: a task where only each pixel's own value counts."""
    torch.manual_seed(0)
    model = build_model(
        "resnet18", 1, 1, decoder_channels=(32, 16, 16, 16, 16), architecture=architecture
    )
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    noise = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.rand(4, 1, 64, 64, generator=noise)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), (x > 0.5).float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.rand(4, 1, 64, 64, generator=noise)
    with torch.no_grad():
        return ((model.eval()(x) > 0) == (x > 0.5)).float().mean().item()


def test_the_full_resolution_skip_lets_the_network_place_edges_on_pixels():
    # smp's U-Net sees the image at full resolution only through stride-2 features: after as
    # many steps it gets about 4 pixels in 5 right (0.79); with the image as a skip, over 0.9
    fullres, plain = _pixel_accuracy("unet_fullres"), _pixel_accuracy("unet")
    assert fullres > 0.9 and fullres > plain + 0.08, (fullres, plain)


def test_decoder_step_is_smps_decoder_block_without_the_concatenation():
    from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoderBlock

    torch.manual_seed(0)
    block = UnetDecoderBlock(8, 3, 4)
    with torch.no_grad():
        block(torch.rand(2, 8, 5, 7), 10, 14, skip_connection=torch.rand(2, 3, 10, 14))  # BN stats
    for mode in ("train", "eval"):
        block.train(mode == "train")
        x, skip = torch.rand(2, 8, 5, 7), torch.rand(2, 3, 10, 14)
        with torch.no_grad():
            expected = block(x, 10, 14, skip_connection=skip)
            torch.testing.assert_close(decoder_step(block, x, skip), expected)


def test_device_auto_is_cpu_here_and_cuda_is_refused_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_for_inference_folds_batchnorm_and_gives_the_same_maps_at_any_size(architecture):
    torch.manual_seed(0)
    model = build_model("resnet18", in_channels=1, classes=2, architecture=architecture)
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
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))

        def forward(self, x):
            return self.conv(x if x.sum() > 0 else -x)  # data-dependent: fx cannot trace it

    model = Branchy()
    with torch.no_grad():
        model.conv[1].running_var.fill_(4.0)
    fast = for_inference(model)
    assert not isinstance(fast, torch.fx.GraphModule)
    assert isinstance(model.conv[1], torch.nn.BatchNorm2d)  # folded in a copy only
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x))
