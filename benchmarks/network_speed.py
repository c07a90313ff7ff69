"""The network alone, in images per second, three ways on the same machine in the same run:

1. ``eager fp32, 1 at a time``: a plain forward pass per image (the path before this work);
2. ``eager bf16 channels-last, batch B``: the issue's reference figure;
3. ``folded + compiled bf16 channels-last, batch B``: BatchNorm folded into the convolutions
   (`pipeline.segment.network.for_inference`), then ``torch.compile`` (mode ``default``;
   ``--compile-mode`` others, in turn, e.g. ``max-autotune``). The folded network is timed
   eager too.

    python benchmarks/network_speed.py --encoder resnet34 --size 1024 --batch 32 --steps 20

Prints device, versions, each figure and the ratio of 3 to 2 (the issue's target: >= 1.5x).
bf16 is used on a GPU only (a CPU without native bf16 runs it slower than fp32); on a CPU the
defaults shrink to 256 px, batch 4, 3 steps so the benchmark ends in minutes.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import torch

from pipeline.segment.network import build_model, for_inference, resolve_device

# an H200 (2026-12-04): "default" 1.96x figure 2, compiled in 12 s; "max-autotune" (Triton
# convolutions timed against cuDNN, CUDA graphs) was still tuning after 200 s
GPU_MODE = "default"


def images_per_second(
    run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, steps: int, sync: Callable
) -> float:
    """Images of the batch `x` per second over `steps` calls of `run`, after 3 warm-up calls."""
    with torch.no_grad():
        for _ in range(3):
            run(x)
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            run(x)
        sync()
    return steps * x.shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", default="resnet34")
    parser.add_argument("--size", type=int, help="square input side (GPU 1024, CPU 256)")
    parser.add_argument("--batch", type=int, help="batch of 2 and 3 (GPU 32, CPU 4)")
    parser.add_argument("--steps", type=int, help="timed calls of each (GPU 20, CPU 3)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-compile", action="store_true", help="skip figure 3")
    parser.add_argument(
        "--compile-mode", nargs="+", help=f"torch.compile modes, in turn (GPU: {GPU_MODE})"
    )
    args = parser.parse_args()
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    size, batch = args.size or (1024 if gpu else 256), args.batch or (32 if gpu else 4)
    steps = args.steps or (20 if gpu else 3)
    name = torch.cuda.get_device_name(0) if gpu else platform.processor() or "cpu"
    print(
        f"device {device} ({name}), torch {torch.__version__}, threads "
        f"{torch.get_num_threads()}, {args.encoder} U-Net, {size}x{size}, batch {batch}"
    )
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    model = build_model(args.encoder, 1, 2).to(device).eval()
    one = torch.rand(1, 1, size, size, device=device)
    rate = images_per_second(model, one, steps * batch, sync)
    print(f"1. eager fp32, 1 at a time: {rate:.1f} images/s")

    cast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu)
    x = torch.rand(batch, 1, size, size, device=device).contiguous(
        memory_format=torch.channels_last
    )
    model = model.to(memory_format=torch.channels_last)
    with cast:
        reference = images_per_second(model, x, steps, sync)
    print(f"2. eager {'bf16' if gpu else 'fp32'} channels-last, batch {batch}: {reference:.1f}")
    folded = for_inference(model).to(memory_format=torch.channels_last)
    with cast:
        plain = images_per_second(folded, x, steps, sync)
    print(
        f"   folded, eager, batch {batch}: {plain:.1f} images/s; {plain / reference:.2f}x figure 2"
    )
    for mode in [] if args.no_compile else args.compile_mode or [GPU_MODE if gpu else "default"]:
        torch._dynamo.reset()
        start = time.perf_counter()
        compiled = torch.compile(folded, mode=mode)
        with cast:
            compiled(x)
            sync()
            first = time.perf_counter() - start
            fast = images_per_second(compiled, x, steps, sync)
        print(
            f"3. folded + compiled ({mode}), batch {batch}: {fast:.1f} images/s (compiling took "
            f"{first:.0f} s); {fast / reference:.2f}x figure 2",
            flush=True,
        )


if __name__ == "__main__":
    main()
