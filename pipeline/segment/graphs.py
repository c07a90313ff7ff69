"""CUDA graphs for inference: a network replayed, not launched kernel by kernel, for input
shapes it has seen before.

At batch 1 a U-Net on a 1024x1024 field is a few hundred kernel launches from Python. On a GPU
machine whose cores are busy with post-processing those launches, not the GPU, set the pace:
beside 15 post-processing workers on an H200's 16 cores, `segment_folder`'s network step took
11-14 ms an image (6-9 ms with the cores idle), capping it near 70 images/s. A CUDA graph
records the launches of one input shape once and replays them in one call: the same kernels on
the same memory, so the same numbers (benchmarks/predict_speed.py checks that on the GPU).
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    input: torch.Tensor  # the replay reads its input here
    output: torch.Tensor  # and writes its output here


class Replayed(torch.nn.Module):
    """`net` (eval mode, no gradients, a CUDA input) as CUDA graphs: an input shape (with its
    strides, dtype and autocast state) seen `after` times is recorded once and replayed from
    then on; at most `keep` graphs are held (the least recently used go), and a shape whose
    recording fails runs eagerly with a warning. Anything else (training, gradients, a CPU
    input) runs `net` as it is. (B, C, H, W) in, `net`'s output out, a fresh tensor each call.

    A graph holds the memory of the parameters it recorded, so any change of their storage
    (`.to`, `.cuda`, a dtype or memory-format change) drops the graphs; `load_state_dict`
    copies in place and the graphs replay with the new values."""

    def __init__(self, net: torch.nn.Module, keep: int = 4, after: int = 2) -> None:
        super().__init__()
        if keep < 1 or after < 1:
            raise ValueError(f"keep and after must be at least 1, got keep={keep} after={after}")
        self.net, self.keep, self.after = net, keep, after
        self.train(net.training)  # in `net`'s mode: an eval-mode network is recorded as it is
        self._graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self._seen: Counter[tuple] = Counter()
        self._failed: set[tuple] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or torch.is_grad_enabled() or not x.is_cuda:
            return self.net(x)
        key = (tuple(x.shape), x.stride(), x.dtype, x.device, *autocast_state())
        graph = self._graphs.get(key)
        if graph is None:
            self._seen[key] += 1
            if self._seen[key] < self.after or key in self._failed:
                return self.net(x)
            graph = self._record(x, key)
            if graph is None:
                return self.net(x)
        self._graphs.move_to_end(key)
        graph.input.copy_(x)
        graph.graph.replay()
        return graph.output.clone()  # the next replay overwrites the graph's own

    def _record(self, x: torch.Tensor, key: tuple) -> _Graph | None:
        """Record `net` on `x`'s shape (after the two warm-up runs on a side stream that the
        CUDA graph docs ask for); None, with a warning, when that fails."""
        try:
            static = x.clone()
            side, main = torch.cuda.Stream(x.device), torch.cuda.current_stream(x.device)
            side.wait_stream(main)
            with torch.cuda.stream(side), _no_cast_cache():
                for _ in range(2):
                    self.net(static)
            main.wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with _no_cast_cache(), torch.cuda.graph(graph):
                output = self.net(static)
        except Exception as exc:  # noqa: BLE001 - any failure: this shape runs eagerly
            why = f"{type(exc).__name__}: {exc}"
            log.warning("CUDA graph of input %s failed (%s): run eagerly", key[0], why)
            self._failed.add(key)
            return None
        self._graphs[key] = _Graph(graph, static, output)
        while len(self._graphs) > self.keep:
            self._graphs.popitem(last=False)
        log.debug("recorded a CUDA graph of input %s", key[0])
        return self._graphs[key]

    def _apply(self, fn, recurse: bool = True):
        self._graphs.clear()  # they point at the parameters' old memory
        return super()._apply(fn, recurse)


def autocast_state(device_type: str = "cuda") -> tuple[bool, torch.dtype]:
    """Whether autocast is on for `device_type`, and its dtype: part of what a recorded (or
    compiled, `pipeline.segment.compiled`) network's input must match."""
    return torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)


def _no_cast_cache() -> torch.autocast:
    """The autocast in force, without its cache of cast weights: a cast cached during
    recording would be freed when the autocast ends, under the graph's feet."""
    enabled, dtype = autocast_state()
    return torch.autocast("cuda", dtype=dtype, enabled=enabled, cache_enabled=False)


def replayed(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`model` as `Replayed` CUDA graphs on a CUDA `device`; itself elsewhere."""
    return Replayed(model) if device.type == "cuda" else model
