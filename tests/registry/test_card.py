import pytest

from pipeline.registry.card import model_card_markdown
from tests.registry.conftest import version_meta

PERCENTILE = "per-channel percentile normalisation (1.0-99.8)"
RANK = "per-channel rank normalisation (each pixel's rank in its channel)"


@pytest.mark.parametrize(
    "how, says",
    [
        ("percentile", f"Input: {PERCENTILE} of raw"),
        ("rank", f"Input: {RANK} of raw"),
        ("percentile_rank", f"Input: {PERCENTILE} and {RANK}, stacked"),
    ],
)
def test_the_readable_card_states_how_inputs_are_normalised(model_dir, how, says):
    meta = version_meta(model_dir)
    meta["model_card"]["normalisation"] = how
    text = " ".join(model_card_markdown({**meta, "model_name": "m"}).split())
    assert says in text
    assert ("rank" in text) == (how != "percentile")


@pytest.mark.parametrize(
    "flips, one_pass, says",
    [
        (False, None, "Inference: one network pass per field or tile"),
        (
            True,
            None,
            "four network passes); `cellseg predict --set predict.flip_tta=false` runs one pass",
        ),
        (True, {"threshold": 0.5}, "runs one pass with post-processing tuned for it"),
    ],
)
def test_the_readable_card_states_the_network_passes(model_dir, flips, one_pass, says):
    meta = version_meta(model_dir)
    meta["model_card"]["postprocess"]["flip_tta"] = flips
    meta["model_card"]["postprocess_one_pass"] = one_pass
    text = " ".join(model_card_markdown({**meta, "model_name": "m"}).split())
    assert says in text and ("tuned for it" in text) == (one_pass is not None)
