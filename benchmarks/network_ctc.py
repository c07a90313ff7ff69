"""The network against the classical watershed on each Cell Tracking Challenge set.

    python benchmarks/network_ctc.py --run RUN_FOLDER [--shared ../shared/data] [--tta]
    python benchmarks/network_ctc.py --lodo Fluo-N2DL-HeLa [--work DIR] [--tta] [--set K=V ...]

``--run``: RUN_FOLDER is a finished `cellseg run` on both sets at once (configs/ctc_nuclei.yaml).
Prints, per dataset, the mean metrics over that set's test block of the network's own instances
(``unet``), its foreground split by the classical markers (``unet_watershed``), and the
classical watershed tuned for that set alone (configs/ctc_gowt1.yaml, configs/ctc_hela.yaml;
scored on the same test frames by benchmarks/classical_ctc.py). Then, per test field, what
the network's own instances got wrong (`error_table`): objects that lie off the silver truth
(it leaves out some dim nuclei) and the foreground IoU without them, nuclei split, objects
merging nuclei.

``--lodo SET``: leave one dataset out. Trains on SET alone (configs/ctc_nuclei.yaml's settings)
and scores the network on the OTHER set's test block, next to the watershed tuned for that
other set: how the model does on a microscope it was not trained on; then the same
per-field errors there. ``--set section.key=value``
overrides that config for the training (as `cellseg run --set` does), e.g. ``train.seed=1``.

``--tta``: also score the same model with flip test-time augmentation switched the other way
from its model card (rows ``unet + flip TTA``, or ``unet - flip TTA`` for a card with it on, as
configs/ctc_nuclei.yaml's are; that row takes the card's post-processing tuned for one pass,
which cards trained since 2026-12-07 hold).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import EvaluateConfig, load_config
from pipeline.config.loading import parse_set_flags
from pipeline.errors import ConfigError
from pipeline.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CELLSEG_SHARED", REPO.parent / "shared")) / "data"
ERRORS = "The network's own instances per test field: objects off the truth, splits, merges:"
COLUMNS = ["fg_iou", "fg_dice", "precision", "recall", "f1", "map", "aji"]


def _classical():
    spec = importlib.util.spec_from_file_location(
        "classical_ctc", REPO / "benchmarks" / "classical_ctc.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def per_dataset(run: RunDir, dataset: str = "") -> pd.DataFrame:
    """Mean metrics per (dataset, method) over the run's test fields; `dataset` names the one
    dataset of a single-set run (its field ids do not name it)."""
    table = pd.read_csv(run.evaluate / "metrics_per_image.csv")
    table["dataset"] = dataset or table["field_id"].map(lambda f: re.sub(r"-\d+-t\d+$", "", f))
    return table.groupby(["dataset", "method"])[COLUMNS].mean()


def flip_tta_scores(
    model_dir: str | Path, dataset_uri: str, cfg, out: RunDir, dataset: str = ""
) -> pd.DataFrame:
    """Score the model with flip TTA the other way from its card's ``postprocess.flip_tta``
    (row ``unet + flip TTA`` for a card without it, ``unet - flip TTA`` for one with it) on
    the test fields of `dataset_uri` (a run or prepared folder `cfg` describes) into `out`;
    mean metrics per (dataset, method), `dataset` as in `per_dataset`."""
    from pipeline.evaluate.reference import load_reference
    from pipeline.evaluate.stage import evaluate_folder, predict_network
    from pipeline.segment.artifact import read_card

    flip = not read_card(model_dir).postprocess.flip_tta
    row = "unet + flip TTA" if flip else "unet - flip TTA"
    samples, _ = load_reference(dataset_uri, cfg, "test")
    predict_network(model_dir, samples, out.predictions_root, {row: "network"}, flip_tta=flip)
    evaluate_folder(str(out.predictions_root), dataset_uri, cfg, out.evaluate)
    return per_dataset(out, dataset)


def field_errors(
    pred: np.ndarray, truth: np.ndarray, image: np.ndarray, overlap: float = 0.2
) -> dict:
    """What went wrong in one field ((H, W) labels, 0 = background; `image` (H, W) normalised):
    predicted objects off the truth (less than `overlap` of their pixels on a true object),
    their share of the predicted foreground, the foreground IoU with and without them, their
    median intensity and the true objects'; true objects split (two or more predicted objects
    with at least `overlap` of their pixels on it) and predicted objects merging two or more
    true ones (at least `overlap` of its pixels on each)."""
    from pipeline.evaluate.metrics import foreground_iou, overlap_table

    inter, _, area = overlap_table(pred, truth)  # (true, predicted) objects, ascending ids
    major = (inter > 0) & (inter >= overlap * area)  # pieces that count
    off = np.unique(pred[pred > 0])[inter.sum(axis=0) < overlap * area]
    mask = np.isin(pred, off)
    return {
        "objects off the truth": off.size,
        "their share of the fg": mask.sum() / max((pred > 0).sum(), 1),
        "fg IoU": foreground_iou(pred, truth),
        "fg IoU without them": foreground_iou(np.where(mask, 0, pred), truth),
        "their intensity": np.median(image[mask]) if off.size else np.nan,
        "true nuclei's": np.median(image[truth > 0]),
        "nuclei split": int((major.sum(axis=1) >= 2).sum()),
        "objects merging": int((major.sum(axis=0) >= 2).sum()),
    }


def error_table(
    prepared: Path, predictions: Path, scoring: EvaluateConfig, method: str = "unet"
) -> pd.DataFrame:
    """`field_errors` per test field of the `prepared` folder, for the `method`'s predictions
    under `predictions`, after the border policy of `scoring` (the config's `EvaluateConfig`).
    The silver truth leaves out some dim nuclei: a network that finds them loses foreground IoU
    and precision for it."""
    from pipeline.evaluate.metrics import apply_border_policy
    from pipeline.evaluate.reference import read_prediction
    from pipeline.preprocess.samples import load_split

    rows = {}
    for sample in load_split(str(prepared), "test"):
        truth = sample.labels["nuclei"]
        pred = read_prediction(predictions / method, sample.field_id, truth.shape)
        pred, truth = apply_border_policy(pred, truth, scoring.border_policy, scoring.border_margin)
        rows[sample.field_id] = field_errors(pred, truth, sample.image[0])
    return pd.DataFrame.from_dict(rows, orient="index")


def leave_one_out(
    train_set: str, shared: Path, work: Path, tta: bool = False, overrides: dict | None = None
) -> tuple[list[dict], pd.DataFrame]:
    """Train on `train_set` alone, score on the other set's test block (see the docstring):
    the metric rows and the network's `error_table` there; `overrides`: ``{"section.key":
    "value"}`` on top of configs/ctc_nuclei.yaml."""
    from pipeline.evaluate.reference import load_reference
    from pipeline.evaluate.stage import evaluate_folder, predict_network
    from pipeline.stages import run_stage

    classical = _classical()
    (other,) = [d for d in classical.DATASETS if d != train_set]
    params = {
        "config_file": str(REPO / "configs" / "ctc_nuclei.yaml"),
        "source": str(shared / "ctc" / train_set),
        "tracking": "none",
        "overrides": {
            **(overrides or {}),
            "paths.data_dir": str(work / "data"),
            "paths.runs_dir": str(work / "runs"),
        },
    }
    outputs: dict[str, dict] = {}
    for stage in ("ingest", "validate", "preprocess", "train"):
        outputs[stage] = run_stage(stage, params, f"lodo-{train_set}", outputs)
    tuned = classical.run_dataset(other, shared, work)  # also prepares the other set
    cfg = classical.ctc_config(other, shared, work)
    run = RunDir(work / "runs" / f"classical-{other}")
    samples, _ = load_reference(str(run.preprocess), cfg, "test")
    scored = RunDir(work / "runs" / f"lodo-scored-{other}")
    folders = predict_network(outputs["train"]["model_dir"], samples, scored.predictions_root)
    result = evaluate_folder(
        str(scored.predictions_root), str(run.preprocess), cfg, scored.evaluate
    )
    rows = [
        {"dataset": other, "method": "watershed (tuned for this set)", **tuned.summary["watershed"]}
    ]
    rows += [
        {"dataset": other, "method": f"{m} (trained on {train_set})", **result.summary[m]}
        for m in folders
    ]
    errors = error_table(run.preprocess, scored.predictions_root, cfg.evaluate)
    if tta:
        table = flip_tta_scores(
            outputs["train"]["model_dir"],
            str(run.preprocess),
            cfg,
            RunDir.create(work / "runs", f"lodo-tta-{other}"),
            other,
        )
        rows += [
            {"dataset": other, "method": f"{m} (trained on {train_set})", **table.loc[(d, m)]}
            for d, m in table.index
        ]
    return rows, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="run folder of configs/ctc_nuclei.yaml")
    parser.add_argument("--lodo", help="train on this set alone, score on the other")
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--work", type=Path, help="output folder (default: a new temp folder)")
    parser.add_argument("--tta", action="store_true", help="also score with flip TTA switched")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        overrides = parse_set_flags(args.set)
    except ConfigError as err:
        parser.error(str(err))
    logging.basicConfig(level=logging.WARNING)
    work = args.work or Path(tempfile.mkdtemp(prefix="cellseg-ctc-"))
    classical = _classical()
    if args.lodo:
        rows, errors = leave_one_out(args.lodo, args.shared, work, args.tta, overrides)
        print(pd.DataFrame(rows).set_index(["dataset", "method"])[COLUMNS].round(3).to_string())
        print(f"\n{ERRORS}")
        print(errors.round(3).to_string())
        return 0
    if args.run is None:
        parser.error("pass --run RUN_FOLDER or --lodo SET")
    if args.set:
        parser.error("--set applies to --lodo's training; a --run folder is already trained")
    cfg = load_config(REPO / "configs" / "ctc_nuclei.yaml")  # the run's data and scoring
    network = per_dataset(RunDir(args.run))
    if args.tta:
        tta = RunDir.create(work / "runs", "joint-flip-tta")
        model = RunDir(args.run).train
        network = pd.concat([network, flip_tta_scores(model, str(args.run), cfg, tta)])
    rows = []
    for name in classical.DATASETS:
        tuned = classical.run_dataset(name, args.shared, work).summary["watershed"]
        rows.append({"dataset": name, "method": "watershed (tuned for this set)", **tuned})
        for method in ("unet", "unet + flip TTA", "unet - flip TTA", "unet_watershed"):
            if (name, method) in network.index:
                rows.append({"dataset": name, "method": method, **network.loc[(name, method)]})
    table = pd.DataFrame(rows).set_index(["dataset", "method"])[COLUMNS]
    print(table.round(3).to_string())
    run = RunDir(args.run)
    print(f"\n{ERRORS}")
    print(error_table(run.preprocess, run.predictions_root, cfg.evaluate).round(3).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
