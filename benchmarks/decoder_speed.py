"""Network time of the decoder's forms on one field, alternated in one process (a noisy machine
drifts between runs, not between neighbouring calls):

1. ``concatenated``: smp's decoder blocks, which convolve the concatenation of the upsampled
   features and the skip (the full-resolution skip's 17 channels copied at full size);
2. ``separate``: `pipeline.segment.network.decoder_step`, the same weights convolving each part
   and adding the results (what the project runs);
3. ``plain U-Net``: smp's own U-Net, without the full-resolution skip.

    python benchmarks/decoder_speed.py [--model MODEL_FOLDER] [--size 1056 1408] [--repeats 5]

All BatchNorm-folded (`for_inference`), channels-last, fp32 on the CPU. Prints the median,
lowest and highest seconds per pass of each, and checks that 1 and 2 give the same maps.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from pipeline.segment.artifact import load_model
from pipeline.segment.network import FullResUnet, build_model, for_inference


class Concatenated(FullResUnet):
    """FullResUnet running smp's own decoder blocks (concatenation, then convolution)."""

    @staticmethod
    def step(block: torch.nn.Module, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return block(x, skip.shape[2], skip.shape[3], skip_connection=skip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a model folder (default: an untrained resnet18)")
    parser.add_argument("--size", type=int, nargs=2, default=(1056, 1408))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.model:
        model, card = load_model(args.model, torch.device("cpu"))
        arch = card.arch
    else:
        arch = {"encoder": "resnet18", "in_channels": 1, "classes": 2}
        model = build_model(**arch)
    if not isinstance(model, FullResUnet):
        parser.error(f"{args.model} is a plain U-Net; pass a model with the full-res skip")
    forms = {"separate": for_inference(model)}
    model.__class__ = Concatenated
    forms["concatenated"] = for_inference(model)
    forms["plain U-Net"] = for_inference(build_model(**{**arch, "architecture": "unet"}))
    forms = {k: m.to(memory_format=torch.channels_last) for k, m in forms.items()}
    x = torch.rand(1, arch["in_channels"], *args.size).contiguous(memory_format=torch.channels_last)
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, threads "
        f"{torch.get_num_threads()}, {arch['encoder']} {'trained' if args.model else 'untrained'}"
        f", {args.size[0]}x{args.size[1]}, {args.repeats} alternated passes each"
    )
    seconds: dict[str, list[float]] = {k: [] for k in forms}
    with torch.no_grad():
        same = torch.allclose(forms["separate"](x), forms["concatenated"](x), atol=1e-4)
        for _ in range(args.repeats):
            for name, net in forms.items():
                start = time.perf_counter()
                net(x)
                seconds[name].append(time.perf_counter() - start)
    for name, times in seconds.items():
        print(
            f"{name}: median {np.median(times):.3f} s (lowest {min(times):.3f}, highest "
            f"{max(times):.3f})"
        )
    print(f"concatenated and separate give the same maps: {same}")


if __name__ == "__main__":
    main()
