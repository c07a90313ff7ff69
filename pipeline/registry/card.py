"""What a registered version says about itself: lineage (code, libraries, data, run) in
``metadata.json`` and the human-readable ``MODEL_CARD.md``."""

from __future__ import annotations

import os
import subprocess
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

LIBRARIES = (
    "cellseg",
    "torch",
    "segmentation-models-pytorch",
    "timm",
    "safetensors",
    "numpy",
    "scikit-image",
    "monai",
)


def code_version() -> str:
    """The git commit of the pipeline's source (``-dirty`` with uncommitted changes), else
    ``$CELLSEG_GIT_COMMIT`` (set in images built without .git), else ``unknown``."""
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("CELLSEG_GIT_COMMIT", "unknown")


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _row(name: str, row: dict[str, float]) -> str:
    cells = " | ".join(f"{row.get(k, float('nan')):.3f}" for k in ("fg_iou", "f1", "map", "aji"))
    return f"| {name} | {cells} |"


def _normalisation_text(card: dict[str, Any]) -> str:
    """How the card's network expects its input normalised (cards before 2026-12: percentile)."""
    rank = "per-channel rank normalisation (each pixel's rank in its channel)"
    percentile = (
        f"per-channel percentile normalisation ({card['low_percentile']}-{card['high_percentile']})"
    )
    method = card.get("normalisation", "percentile")
    if method == "percentile_rank":
        return f"{percentile} and {rank}, stacked"
    return rank if method == "rank" else percentile


def _passes_text(card: dict[str, Any]) -> str:
    """How many network passes a field takes, and what turning the flips off uses."""
    if not card["postprocess"].get("flip_tta"):
        return "one network pass per field or tile"
    tuned = " with post-processing tuned for it" if card.get("postprocess_one_pass") else ""
    return (
        "the field and its three flips averaged (flip TTA, four network passes); `cellseg "
        f"predict --set predict.flip_tta=false` runs one pass{tuned}"
    )


def model_card_markdown(meta: dict[str, Any]) -> str:
    """The human-readable card of a version from its metadata (``{version}`` is filled in at
    registration, once the number is known)."""
    card, test = meta["model_card"], meta["metrics"].get("test", {})
    rows = "\n".join(_row(name, row) for name, row in test.items())
    data = meta.get("training_data", {})
    pixel = data.get("pixel_size_um")
    return f"""# {meta["model_name"]} {{version}}

**Segments** {card["target"]} (instance labels, 0 = background) in fluorescence microscopy
images with the channels {", ".join(card["channels"])} in this order (C, H, W). The network's
own instances are {card["outputs"]} maps turned into objects by
`postprocess.instances={card["postprocess"]["instances"]}`.

- Model id (sha256 of the weights): `{meta["model_id"]}`
- Architecture: U-Net, encoder `{card["encoder"]}`, {card["in_channels"]} input channel(s)
- Input: {_normalisation_text(card)} of raw intensities; any image size (tiled beyond the
  model's tile size)
- Inference: {_passes_text(card)}
- Expected pixel size: {f"{pixel} µm" if pixel else "as the training images (not recorded)"};
  training objects: {data.get("object_size_text", "see the dataset manifest")}

## Training data
Dataset `{meta["dataset_id"]}` (layout `{data.get("layout", "?")}`), run `{meta["run_id"]}`.
{data.get("fields_text", "")}

## Test scores ({meta.get("test_data", {}).get("text", "test split")})
| method | fg IoU | F1@0.5 | mAP | AJI |
| --- | --- | --- | --- | --- |
{rows}

`unet` is the network's own instances, as `cellseg predict` returns them; `unet_one_pass` (a
card with flip TTA) the same with one network pass; `unet_watershed` the network's foreground
split by the classical markers; other rows are classical methods on the same fields. Full report:
{meta.get("report", "the run's evaluate/report.html")}

## Limitations
- Trained only on the dataset above; images from other microscopes, stains or pixel sizes
  can score much lower: check a few fields before trusting counts.
- Objects cut by the image border are scored by the border policy in the report.
- Lineage: code `{meta["code_version"]}`, libraries {meta["libraries"]},
  W&B run {meta.get("wandb_run") or "none"}.
"""
