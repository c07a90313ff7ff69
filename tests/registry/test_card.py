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
