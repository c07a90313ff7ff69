"""Evaluate stage: score every method and the network on the test split, write metrics and a
report (outputs: `pipeline.evaluate.scoring`); or score any folder of predicted label images.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from pipeline.atomic import atomic_path
from pipeline.config import PipelineConfig
from pipeline.conventions import safe_name
from pipeline.evaluate.reference import load_reference, prediction_folders
from pipeline.evaluate.scoring import EvalResult, write_evaluation
from pipeline.io import write_labels
from pipeline.preprocess.samples import Sample
from pipeline.rundir import RunDir
from pipeline.tracking import track

# Evaluation rows of the network: its own instances (the main row), and its foreground split
# with the classical method's markers, so the model is never credited with post-processing.
NETWORK_ROWS = {"unet": "network", "unet_watershed": "watershed"}
# a card with flip TTA is scored with one pass too: what `predict.flip_tta: false` gives
ONE_PASS_ROW = "unet_one_pass"


def predict_network(
    model_dir: str | Path,
    samples: list[Sample],
    out_root: Path,
    rows: dict[str, str] = NETWORK_ROWS,
    flip_tta: bool | None = None,
) -> dict[str, str]:
    """Run the trained network on `samples` (test images, normalised again from their raw
    intensities as the model's card says) and write one predictions folder ``out_root/<row>``
    per row of `rows` (default NETWORK_ROWS); returns {row: folder}. `flip_tta` (None: the
    card's) switches flip test-time augmentation on or off."""
    from pipeline.segment.artifact import load_model
    from pipeline.segment.fields import card_input
    from pipeline.segment.inference import card_maps
    from pipeline.segment.network import for_inference
    from pipeline.segment.postprocess import to_instances

    model, card = load_model(model_dir)
    card = card.for_prediction(flip_tta)
    model = for_inference(model)
    device = next(model.parameters()).device
    folders = {name: out_root / name for name in rows}
    with ExitStack() as stack:  # every folder appears complete, or not at all
        out = {name: stack.enter_context(atomic_path(f)) for name, f in folders.items()}
        for s in samples:
            image = card_input(s.raw, card)
            maps = card_maps(model, image, device, card, raw=s.raw)
            for name, how in rows.items():
                labels = to_instances(maps, image, card, how)
                write_labels(out[name] / f"{safe_name(s.field_id)}.tif", labels)
    return {name: str(folder) for name, folder in folders.items()}


def evaluate(
    prepared_uri: str,
    predictions: dict[str, str],
    cfg: PipelineConfig,
    run: RunDir,
    model_dir: str | None = None,
    context: dict | None = None,
) -> EvalResult:
    """Score baselines (`predictions`: method -> folder) and, if given, the network (a model
    folder; NETWORK_ROWS, and ONE_PASS_ROW where its card has flip TTA) into the run's
    evaluation folder. `context` (dataset_id, run_id, validation
    summary, ...) is copied into the summary and report."""
    predictions = dict(predictions)
    samples, info = load_reference(prepared_uri, cfg, "test")
    if model_dir:
        from pipeline.segment.artifact import read_card

        predictions |= predict_network(model_dir, samples, run.predictions_root)
        if read_card(model_dir).postprocess.flip_tta:
            one = {ONE_PASS_ROW: NETWORK_ROWS["unet"]}
            predictions |= predict_network(model_dir, samples, run.predictions_root, one, False)
    meta = {**info, **(context or {})}
    result = write_evaluation(samples, predictions, cfg, run.evaluate, meta)
    with track(cfg, str(run.root), name=f"evaluate-{run.run_id}", job_type="evaluate") as t:
        t.summary({f"test/{m}/{k}": v for m, row in result.summary.items() for k, v in row.items()})
    return result


def evaluate_folder(
    pred_dir: str,
    dataset_uri: str,
    cfg: PipelineConfig,
    out_dir: str | Path,
    split: str = "test",
    context: dict | None = None,
) -> EvalResult:
    """Score a folder of predicted label images against a dataset; outputs as `evaluate`.

    `pred_dir` holds ``<field>.tif`` label images (one method, named after the folder) or one
    sub-folder of them per method (e.g. a run's ``predictions/``). `dataset_uri` is a dataset
    version, a prepared folder or a run folder; every `split` field with ``data.target`` labels
    must have a prediction.
    """
    predictions = prediction_folders(pred_dir)
    samples, info = load_reference(dataset_uri, cfg, split)
    meta = {**info, "predictions": str(pred_dir), "split": split, **(context or {})}
    return write_evaluation(samples, predictions, cfg, Path(out_dir), meta)
