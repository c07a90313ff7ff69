"""U-Net training and inference throughput on this machine (CPU, or GPU when present).

    python benchmarks/train_throughput.py --encoder resnet18 --crop 256 --batch 8 --steps 10

Prints device, versions, training steps/s and crops/s, and whole-field inference time at the
demo size and the real BBBC020 size (1040 x 1388).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from pipeline.config import PostprocessConfig
from pipeline.segment.inference import predict_maps
from pipeline.segment.network import build_model, resolve_device
from pipeline.train.loop import seg_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"device: {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    model = build_model(args.encoder, in_channels=2, classes=2).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(args.batch, 2, args.crop, args.crop, device=device)
    y = (torch.rand(args.batch, 2, args.crop, args.crop, device=device) > 0.5).float()

    def step() -> None:
        loss = seg_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - start) / args.steps
    print(
        f"train {args.encoder} batch {args.batch} x {args.crop}^2: {1 / dt:.2f} steps/s, "
        f"{args.batch / dt:.1f} crops/s"
    )
    for h, w in ((256, 320), (1040, 1388)):
        image = np.random.rand(2, h, w).astype(np.float32)
        predict_maps(model, image, device, PostprocessConfig())
        start = time.perf_counter()
        for _ in range(3):
            predict_maps(model, image, device, PostprocessConfig())
        print(f"predict one {h}x{w} field: {(time.perf_counter() - start) / 3 * 1000:.0f} ms")


if __name__ == "__main__":
    main()
