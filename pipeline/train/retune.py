"""Tune a trained model's post-processing again on annotated fields of another dataset (a
microscope it was not trained on, your own annotations): the same weights, the same choice as
after training (`tune.tune_seed_threshold`: foreground threshold, seeds, size and dimness
cuts, for the card's flips and for one pass), made on those fields; written as a new model
folder, the source model left as it was.

    cellseg tune --model production --dataset data/datasets/folder-<id> --out my_model/

Where the dataset has a test block that the tuning did not use, the network's own instances
there are scored with the card before and after (with the flips and with one pass, where the
card has flips), so the gain is measured on fields the choice never saw.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pipeline.atomic import require_empty_folder
from pipeline.config import PipelineConfig
from pipeline.conventions import SPLITS, Record
from pipeline.errors import ConfigError, DataError
from pipeline.evaluate.reference import load_reference
from pipeline.segment.card import TUNED, ModelCard

log = logging.getLogger(__name__)
SCORED = ("fg_iou", "f1", "map", "aji")  # the metrics the result reports before and after


@dataclasses.dataclass
class RetuneResult(Record):
    model_dir: str  # the new model folder: the source's weights, the card tuned again
    model_id: str  # sha256 of the weights: the source model's id
    source: str  # the model folder it came from, unchanged
    dataset_id: str
    splits: list[str]  # the dataset's splits the tuning read
    fields: int  # how many annotated fields it read
    before: dict[str, float]  # the card's tuned settings (card.TUNED) before ...
    after: dict[str, float]  # ... and after
    # the network's own instances on the dataset's test block, with the card before and after
    # ({"before": {metric: value}, "after": ...}; for a card with flips "before_one_pass" and
    # "after_one_pass" too); empty where the tuning read that block or the dataset has none
    test_scores: dict[str, dict[str, float]]


def retune(
    model_dir: str | Path,
    dataset_uri: str,
    cfg: PipelineConfig,
    out: str | Path,
    splits: Sequence[str] = ("train", "val"),
) -> RetuneResult:
    """Write the model of `model_dir` into the new or empty folder `out` with its
    post-processing chosen on the `splits` fields of `dataset_uri` (a dataset version, a
    prepared folder or a run folder, read as `cfg` says: its layout, which edge objects the
    annotation leaves out; the labels are the card's target); see the module docstring."""
    import torch

    from pipeline.segment.artifact import load_model, model_folder, save_model
    from pipeline.train.loop import edge_policy
    from pipeline.train.tune import tune_seed_threshold

    if not splits or not set(splits) <= set(SPLITS):
        raise ConfigError(f"splits {list(splits)}: choose among {', '.join(SPLITS)}")
    splits = list(dict.fromkeys(splits))  # each once
    require_empty_folder(out)
    source = model_folder(model_dir)
    model, card = load_model(source)
    if "distance" not in card.outputs:
        raise DataError(
            f"{source}: the model predicts {card.outputs} only; its instances have no seeds to "
            "tune (models with a distance map: train.outputs)"
        )
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, target=card.target))
    fields, dataset_id = [], "unknown"
    for split in splits:
        found, info = load_reference(dataset_uri, cfg, split, required=False)
        fields += found
        dataset_id = info["dataset_id"]
    if not fields:
        raise DataError(
            f"{dataset_uri}: no {'/'.join(splits)} fields with {card.target} labels to tune on; "
            "annotate some, or pass --split test"
        )
    images = [_normalised(s.raw, card, s.field_id) for s in fields]
    gts = [s.labels[card.target] for s in fields]
    policy = edge_policy(not cfg.data.edge_objects_labelled)
    log.info("tuning %s on %d fields of %s (%s)", source, len(fields), dataset_uri, policy)
    device = next(model.parameters()).device
    with torch.no_grad():
        tuned = tune_seed_threshold(model, (images, gts), device, card, policy)
    new_id = save_model(model, tuned, out)
    one_pass = tuned.postprocess.flip_tta  # a card with flips is scored with one pass too
    scores = {} if "test" in splits else _test_scores(source, Path(out), dataset_uri, cfg, one_pass)
    return RetuneResult(
        model_dir=str(out),
        model_id=new_id,
        source=str(source),
        dataset_id=dataset_id,
        splits=list(splits),
        fields=len(fields),
        before=_settings(card),
        after=_settings(tuned),
        test_scores=scores,
    )


def _normalised(raw, card: ModelCard, field_id: str):
    """A field's (C, H, W) raw intensities normalised as the card says; DataError naming the
    field where its channels are not the card's."""
    if raw.shape[0] != len(card.channels):
        raise DataError(
            f"field {field_id}: {raw.shape[0]} channel(s), the model reads {len(card.channels)} "
            f"({', '.join(card.channels)}); set data.channels to those"
        )
    from pipeline.segment.fields import card_input

    return card_input(raw, card)


def _settings(card: ModelCard) -> dict[str, float]:
    """The card's tuned settings (`card.TUNED`), for the flips as the card has them."""
    return {name: getattr(card.postprocess, name) for name in TUNED}


def _test_scores(
    before: Path, after: Path, dataset_uri: str, cfg: PipelineConfig, one_pass: bool
) -> dict[str, dict[str, float]]:
    """The network's own instances on the dataset's test block (its mean metrics, SCORED) from
    the model folders `before` and `after`; with `one_pass` (the tuned card has flips), one pass too
    (``before_one_pass``, ``after_one_pass``: what ``predict.flip_tta: false`` gives, each
    card's one-pass settings where it has them); {} where the block holds no annotated field."""
    from pipeline.evaluate.stage import NETWORK_ROWS, evaluate_folder, predict_network

    samples, _ = load_reference(dataset_uri, cfg, "test", required=False)
    if not samples:
        return {}
    rows = {"before": (before, None), "after": (after, None)}
    if one_pass:
        rows |= {"before_one_pass": (before, False), "after_one_pass": (after, False)}
    with tempfile.TemporaryDirectory(prefix="cellseg-tune-") as tmp:
        predictions = Path(tmp) / "predictions"
        for name, (folder, flips) in rows.items():
            predict_network(folder, samples, predictions, {name: NETWORK_ROWS["unet"]}, flips)
        result = evaluate_folder(str(predictions), dataset_uri, cfg, Path(tmp) / "ev")
    return {name: {k: result.summary[name][k] for k in SCORED} for name in rows}
