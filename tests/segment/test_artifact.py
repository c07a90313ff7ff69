"""Model folders: weights round-trip exactly, and a file with code in it never runs."""

import dataclasses
import os
import pickle

import pytest
import torch

from pipeline.errors import DataError
from pipeline.segment.artifact import CARD, WEIGHTS, load_model, model_id, save_model
from pipeline.segment.card import ModelCard
from pipeline.segment.network import ARCHITECTURES, build_model

CARD_ = ModelCard("resnet18", 2, ["foreground"], ["c1", "c5"], "cells", "c1", 1.0, 99.8)


class _Exploit:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_weights_round_trip_exactly(tmp_path, architecture):
    torch.manual_seed(1)
    written = dataclasses.replace(CARD_, architecture=architecture)
    model = build_model(**written.arch)
    digest = save_model(model, written, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [CARD, WEIGHTS]
    loaded, card = load_model(tmp_path / "m", torch.device("cpu"))
    assert card == written and type(loaded) is type(model) and digest == model_id(tmp_path / "m")
    original, again = model.state_dict(), loaded.state_dict()
    assert original.keys() == again.keys()
    assert all(torch.equal(original[k], again[k]) for k in original)


@pytest.mark.parametrize(
    ("umask", "file", "folder"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)]
)
def test_a_model_folder_is_readable_by_another_user_as_the_umask_allows(
    tmp_path, umask, file, folder
):
    # safetensors writes its file 0600: a model server running as another user could not load it
    old = os.umask(umask)
    try:
        save_model(build_model(**CARD_.arch), CARD_, tmp_path / "m")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "m").iterdir()}
    assert modes == {CARD: file, WEIGHTS: file}
    assert (tmp_path / "m").stat().st_mode & 0o777 == folder


def test_a_crafted_pickle_is_refused_without_running_code(tmp_path):
    save_model(build_model(**CARD_.arch), CARD_, tmp_path / "m")
    marker = tmp_path / "pwned"
    (tmp_path / "m" / WEIGHTS).write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(DataError, match=f"{WEIGHTS}: not readable safetensors weights"):
        load_model(tmp_path / "m", torch.device("cpu"))
    assert not marker.exists()
    # A torch pickle checkpoint is not a model folder at all.
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    torch.save({"x": _Exploit(str(marker))}, legacy / "model.pt")
    with pytest.raises(DataError, match="no model here"):
        load_model(legacy, torch.device("cpu"))
    assert not marker.exists()


@pytest.mark.parametrize(
    "other",
    [
        ModelCard("resnet34", 2, ["foreground"], ["c1", "c5"], "cells", "c1", 1.0, 99.8),
        dataclasses.replace(CARD_, architecture="unet_fullres"),  # the same, with the skip
    ],
)
def test_weights_of_another_architecture_are_refused(tmp_path, other):
    save_model(build_model(**CARD_.arch), CARD_, tmp_path / "m")
    (tmp_path / "m" / CARD).write_text(__import__("json").dumps(other.to_dict()))
    with pytest.raises(DataError, match="do not match the card's architecture"):
        load_model(tmp_path / "m", torch.device("cpu"))
