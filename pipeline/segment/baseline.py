"""Baseline stage: every configured classical method on every test field of a prepared split."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

from pipeline.atomic import atomic_path
from pipeline.config import PipelineConfig
from pipeline.conventions import safe_name
from pipeline.ingest.layouts import method_channel
from pipeline.io import write_labels
from pipeline.jsonio import write_json
from pipeline.preprocess.samples import load_split
from pipeline.rundir import RunDir
from pipeline.segment.classical import MethodInput, get_method, segment

log = logging.getLogger(__name__)


def run_baselines(
    prepared_uri: str, cfg: PipelineConfig, run: RunDir, channels: list[str]
) -> dict[str, str]:
    """Segment every test field with each configured method.

    Writes the run's ``predictions/<method>/<safe_id>.tif`` (uint16 labels; uint32 above 65535
    objects) and ``method.json`` (method, channel, parameters), and returns
    ``{method: folder}``.
    """
    for name in cfg.baseline.methods:
        get_method(name)  # fail before any work on an unknown name
    channel = method_channel(cfg.data.layout, cfg.data.target, cfg.baseline.channel, channels)
    samples = load_split(prepared_uri, "test")
    out = {}
    for name in cfg.baseline.methods:
        folder = run.predictions(name)
        start = time.perf_counter()
        with atomic_path(folder) as tmp:
            for s in samples:
                x = MethodInput(s.raw, channels, channel, cfg.data.target, cfg.baseline.watershed)
                write_labels(tmp / f"{safe_name(s.field_id)}.tif", segment(name, x))
            write_json(
                tmp / "method.json",
                {"method": name, "channel": channel, "params": asdict(cfg.baseline.watershed)},
            )
        out[name] = str(folder)
        log.info(
            "baseline %s: %d test fields in %.1fs -> %s",
            name,
            len(samples),
            time.perf_counter() - start,
            folder,
        )
    return out
