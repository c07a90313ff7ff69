"""torch.compile for inference on a CPU (``predict.compile``): a network compiled once per
input shape, for folders of many fields of one size.

On a CPU the network is most of a field's time, and its convolutions already run in oneDNN at
close to the cores' bf16 rate; what inductor adds is the rest fused around them (ReLUs and
residual sums in one pass, weights prepacked as constants). On the project's 2-core AMD EPYC a
resnet18 U-Net pass on a 1056x1408 field took 0.43-0.45 s compiled against 0.53-0.56 s eagerly
(benchmarks/predict_speed.py --compile on|off, docs/experiments.md), after a compile of about
13 s per process and input shape (4-5 s with inductor's on-disk cache warm). So it pays only for
a folder of many same-sized fields, and it is off by default. Kernels for dynamic shapes ran
slower than eager here, so each shape gets its own static graph, up to `Compiled.keep` shapes.
"""

from __future__ import annotations

import logging

import torch

from pipeline.segment.graphs import autocast_state

log = logging.getLogger(__name__)


class Compiled(torch.nn.Module):
    """`net` (eval mode, no gradients, a CPU input) through torch.compile (inductor, weights
    frozen into the graph, a static graph per input shape and autocast state; a batch runs one
    sample at a time, so a field's tiles need one graph whatever their number). The first `keep`
    shapes are compiled; later new shapes run `net` as it is, as does anything else (training,
    gradients, a GPU input) and every call after a compile failed (a warning says why: no C++
    compiler, for instance). (B, C, H, W) in, `net`'s output out.

    `net` is put in channels-last. Frozen weights are copies: a change of the parameters after
    a shape was compiled is not seen by its graph, so `.to` and the like (`_apply`) start the
    compiled graphs over; `load_state_dict`, which copies in place, is not seen: for inference
    of fixed weights only."""

    def __init__(self, net: torch.nn.Module, keep: int = 4) -> None:
        super().__init__()
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        # channels-last, as `passes.network_maps` runs a network: it would change any other
        # layout on each call, and each change would start the compiled graphs over
        self.net = net.to(memory_format=torch.channels_last)
        self.keep, self.failed = keep, False
        self.train(net.training)  # in `net`'s mode: an eval-mode network is compiled as it is
        self._start()

    def _start(self) -> None:
        # stored past nn.Module's attribute hook: the compiled wrapper holds `net` again, and
        # as a submodule it would list every parameter a second time in the state dict
        fast = torch.compile(self.net, dynamic=False)
        object.__setattr__(self, "_fast", fast)
        self._shapes: set[tuple] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or torch.is_grad_enabled() or x.is_cuda or self.failed:
            return self.net(x)
        if len(x) > 1:  # one sample at a time: a field's last batch of tiles is often short,
            # and every batch size would be a shape to compile
            return torch.cat([self(x[i : i + 1]) for i in range(len(x))])
        key = (tuple(x.shape), x.stride(), x.dtype, *autocast_state("cpu"))
        if key not in self._shapes:
            if len(self._shapes) >= self.keep:
                log.debug("input %s: %d shapes compiled already, run eagerly", key[0], self.keep)
                return self.net(x)
            log.info("compiling the network for input %s (once per shape)", key[0])
        try:
            # freezing read from the config at compile time (as options= it had no effect)
            with torch._inductor.config.patch(freezing=True):
                out = self._fast(x)
        except Exception as exc:  # noqa: BLE001 - any compile failure: run eagerly from now on
            log.warning(
                "torch.compile failed (%s: %s): the network runs eagerly", type(exc).__name__, exc
            )
            self.failed = True
            return self.net(x)
        self._shapes.add(key)
        return out

    def _apply(self, fn, recurse: bool = True):
        out = super()._apply(fn, recurse)
        self._start()  # the frozen graphs hold the parameters' old values
        return out


def compiled(model: torch.nn.Module, device: torch.device, enabled: bool) -> torch.nn.Module:
    """`model` as `Compiled` when `enabled` on a CPU `device`; itself otherwise (on a GPU the
    network step replays CUDA graphs instead: `pipeline.segment.graphs`)."""
    if enabled and device.type != "cpu":
        log.info("predict.compile applies on a CPU; on %s the network replays CUDA graphs", device)
    return Compiled(model) if enabled and device.type == "cpu" else model
