import logging
from dataclasses import replace

import pytest

from pipeline.config import PostprocessConfig, WatershedConfig
from pipeline.errors import DataError
from pipeline.segment.card import ModelCard


def test_card_round_trips_through_a_dict():
    post = PostprocessConfig("components", 0.4, watershed=WatershedConfig(min_distance=9))
    card = ModelCard("resnet34", 2, ["foreground"], ["c1", "c5"], "cells", "c1", 1.0, 99.8, post)
    again = ModelCard.from_dict(card.to_dict())
    assert again == card and again.postprocess.watershed.min_distance == 9
    assert again.arch == {
        "encoder": "resnet34",
        "in_channels": 2,
        "classes": 1,
        "decoder_channels": [128, 64, 32, 16, 16],
        "architecture": "unet",  # a card without one was written before the full-res skip
    }
    older = card.to_dict()
    del older["normalisation"]  # cards written before 2026-12 normalised by percentiles
    assert ModelCard.from_dict(older).normalisation == "percentile"
    del older["postprocess"]["flood"]  # cards written before 2026-12-01 flooded the distance
    assert ModelCard.from_dict(older).postprocess.flood == "distance"
    del older["postprocess_one_pass"]  # cards written before 2026-12-07 were tuned once
    assert ModelCard.from_dict(older).postprocess_one_pass is None
    one = PostprocessConfig(threshold=0.4, seed_h=0.05)
    tuned = ModelCard.from_dict(replace(card, postprocess_one_pass=one).to_dict())
    assert tuned.postprocess_one_pass == one


def test_turning_the_flips_off_takes_the_settings_tuned_for_one_pass(caplog):
    """A card tuned with flip TTA and for one pass: a prediction with the flips off takes the
    one-pass settings (an explicit faint-object cut still wins); with them on, or on a card
    tuned once, the card's own settings with only the asked change."""
    flips = PostprocessConfig(threshold=0.6, seed_h=0.1, min_relative_intensity=0.2, flip_tta=True)
    one = PostprocessConfig(threshold=0.5, seed_h=0.05, min_relative_intensity=0.1)
    once = ModelCard("resnet18", 1, ["foreground"], ["fluo"], "nuclei", "fluo", 1.0, 99.8, flips)
    card = replace(once, postprocess_one_pass=one)
    with caplog.at_level(logging.INFO, logger="pipeline.segment.card"):
        assert card.for_prediction(flip_tta=False).postprocess == one
    assert "tuned for one pass (threshold 0.5, seed_threshold 0.5, seed_h 0.05" in caplog.text
    cut = card.for_prediction(flip_tta=False, min_relative_intensity=0.0).postprocess
    assert cut == replace(one, min_relative_intensity=0.0)
    assert card.for_prediction() is card and card.for_prediction(flip_tta=True) is card
    assert once.for_prediction(flip_tta=False).postprocess == replace(flips, flip_tta=False)
    assert card.postprocess == flips  # the card itself is left as it was


@pytest.mark.parametrize(
    "change, message",
    [
        ({"encoder": None}, "missing encoder"),
        ({"colour": "blue"}, "unknown keys colour"),
        ({"postprocess": {"instances": "magic"}}, "postprocess.instances='magic' is not valid"),
        ({"postprocess": {"threshold": 2}}, "postprocess.threshold=2"),
        ({"postprocess": {"flood": "flow"}}, "postprocess.flood='flow' is not valid"),
        ({"postprocess_one_pass": {"threshold": 2}}, "postprocess_one_pass.threshold=2"),
        ({"normalisation": "zscore"}, "normalisation 'zscore' not one of percentile, rank"),
        ({"outputs": ["foreground", "contact"]}, "must be the first 1 to 3 of"),
        ({"outputs": []}, "must be the first 1 to 3 of"),
    ],
)
def test_a_wrong_card_is_refused_naming_the_source(change, message):
    d = ModelCard("resnet18", 1, ["foreground"], ["fluo"], "nuclei", "fluo", 1.0, 99.8).to_dict()
    d.update(change)
    if change.get("encoder", "x") is None:
        del d["encoder"]
    with pytest.raises(DataError, match=f"model.pt: not a valid cellseg model card.*{message}"):
        ModelCard.from_dict(d, "model.pt")
