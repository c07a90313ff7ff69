"""Classical methods on the real Cell Tracking Challenge data in ../shared/data/ctc.

For each dataset: ingest (layout ctc, target nuclei; frames split in contiguous blocks, the last
block is test), validate, preprocess, run every classical method on the test frames, evaluate
(the config's border policy: objects touching the image edge are not scored, as the silver
truth skips most nuclei there) and print one table per dataset::

    python benchmarks/classical_ctc.py [--shared ../shared/data] [--work /tmp/cellseg-ctc]

The watershed parameters per dataset were chosen on the validation frames (never the test
frames); they differ only in scale: GOWT1 nuclei are ~60 px across, HeLa nuclei ~25 px.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from pipeline.config import PipelineConfig, load_config
from pipeline.evaluate.scoring import EvalResult
from pipeline.evaluate.stage import evaluate
from pipeline.ingest.dataset import ingest
from pipeline.preprocess.prepare import preprocess
from pipeline.rundir import RunDir
from pipeline.segment.baseline import run_baselines

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CELLSEG_SHARED", REPO.parent / "shared")) / "data"
# One YAML per dataset (layout, target, border policy and the watershed parameters chosen on the
# validation frames) in configs/, shared with `cellseg run --config`.
DATASETS: dict[str, Path] = {
    "Fluo-N2DH-GOWT1": REPO / "configs" / "ctc_gowt1.yaml",
    "Fluo-N2DL-HeLa": REPO / "configs" / "ctc_hela.yaml",
}
COLUMNS = ["fg_iou", "fg_dice", "precision", "recall", "f1", "map", "aji", "abs_count_error"]


def ctc_config(name: str, shared: Path, work: Path) -> PipelineConfig:
    """The benchmark's configuration for one CTC dataset; data and runs go under `work`."""
    return load_config(
        DATASETS[name],
        {
            "data.source": str(shared / "ctc" / name),
            "paths.data_dir": str(work / "data"),
            "paths.runs_dir": str(work / "runs"),
            "tracking.backend": "none",
        },
    )


def run_dataset(name: str, shared: Path, work: Path) -> EvalResult:
    """Ingest, validate, preprocess, run the classical methods and evaluate one CTC dataset."""
    from pipeline.validate.run import validate

    cfg = ctc_config(name, shared, work)
    run = RunDir.create(cfg.paths.runs_dir, f"classical-{name}")
    dataset = ingest(cfg)
    validation = validate(dataset.uri, cfg, run.validate).summary()  # bad data stops it
    prepared = preprocess(dataset.uri, cfg, run.preprocess)
    predictions = run_baselines(prepared.uri, cfg, run, prepared.channels)
    context = {
        "dataset_id": dataset.dataset_id,
        "run_id": f"classical-{name}",
        "validation": validation,
    }
    return evaluate(prepared.uri, predictions, cfg, run, context=context)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=SHARED, help="folder holding ctc/")
    parser.add_argument("--work", type=Path, help="output folder (default: a new temp folder)")
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not (args.shared / "ctc").is_dir():
        parser.error(f"{args.shared / 'ctc'} not found; pass --shared or set CELLSEG_SHARED")
    work = args.work or Path(tempfile.mkdtemp(prefix="cellseg-ctc-"))
    for name in args.datasets:
        start = time.perf_counter()
        result = run_dataset(name, args.shared, work)
        table = pd.DataFrame(result.summary).T[COLUMNS]
        policy = ctc_config(name, args.shared, work).evaluate.border_policy
        print(
            f"\n{name} (test frames: mean over frames, border policy {policy}; "
            f"{time.perf_counter() - start:.0f} s)"
        )
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
        print(f"report: {result.report_html}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
