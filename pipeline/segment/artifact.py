"""A trained model on disk: a folder holding the weights and the card, nothing executable.

    weights.safetensors   the network's state dict (safetensors: loading runs no code)
    card.json             the ModelCard: everything inference needs

The model id is the sha256 of ``weights.safetensors``: it names the exact weights from training
through evaluation to the registry. Training writes such a folder for its best epoch; the
registry stores the same two files in every version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.atomic import atomic_path, public_file
from pipeline.errors import DataError
from pipeline.io import sha256_file
from pipeline.jsonio import read_json
from pipeline.segment.card import ModelCard

if TYPE_CHECKING:  # torch is imported where weights are read or written, not to list a registry
    import torch

WEIGHTS = "weights.safetensors"
CARD = "card.json"


def save_model(model: torch.nn.Module, card: ModelCard, folder: str | Path) -> str:
    """Write `model`'s weights and `card` as one model folder (atomically); return the model
    id (sha256 of the weights file)."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})
        public_file(tmp / WEIGHTS)  # safetensors writes 0600: a model server may be another user
        (tmp / CARD).write_text(json.dumps(card.to_dict(), indent=2, sort_keys=True))
    return model_id(folder)


def model_folder(path: str | Path) -> Path:
    """`path` itself if it is a model folder, else its ``model/`` sub-folder (a run's train
    folder); DataError if neither holds the weights and the card."""
    path = Path(path)
    for folder in (path, path / "model"):
        if (folder / WEIGHTS).is_file() and (folder / CARD).is_file():
            return folder
    raise DataError(
        f"{path}: no model here (expected {WEIGHTS} and {CARD}); pass a model folder, a run's "
        "train/ folder or a registered version"
    )


def model_id(folder: str | Path) -> str:
    return sha256_file(model_folder(folder) / WEIGHTS)


def read_card(folder: str | Path) -> ModelCard:
    path = model_folder(folder) / CARD
    return ModelCard.from_dict(read_json(path, "model card", "re-fetch the model"), str(path))


def load_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a model folder (safetensors: no code can run)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = model_folder(folder) / WEIGHTS
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not readable safetensors weights ({exc}); re-fetch it") from exc


def load_model(
    folder: str | Path, device: torch.device | None = None
) -> tuple[torch.nn.Module, ModelCard]:
    """The network of a model folder in eval mode on `device` (default: a GPU when present),
    and its card. Weights that do not fit the card's architecture raise DataError."""
    from pipeline.segment.network import build_model, resolve_device

    card = read_card(folder)
    model = build_model(**card.arch)
    try:
        model.load_state_dict(load_weights(folder))
    except RuntimeError as exc:
        raise DataError(
            f"{model_folder(folder)}: weights do not match the card's architecture "
            f"({str(exc).splitlines()[0]})"
        ) from exc
    return model.to(device or resolve_device("auto")).eval(), card
