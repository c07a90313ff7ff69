"""The model card: everything inference needs to use a trained network, typed.

`train` writes it into the checkpoint (and the registry copies it); `predict`, evaluation and
the registry read it, so a model is applied exactly as it was trained: same channels in the
same order, same normalisation, same threshold and post-processing.
"""

from __future__ import annotations

import logging
from dataclasses import MISSING, dataclass, field, replace
from typing import Any

from pipeline.config import PostprocessConfig
from pipeline.config.loading import from_dict
from pipeline.config.sections import NORMALISATIONS
from pipeline.conventions import Record
from pipeline.errors import DataError

log = logging.getLogger(__name__)
OUTPUTS = ("foreground", "distance", "contact")  # the network's output maps, in order
# what the tuning after training chooses (pipeline.train.tune)
TUNED = (
    "threshold",
    "seed_threshold",
    "seed_h",
    "seed_shape",
    "min_relative_size",
    "min_relative_intensity",
)


@dataclass
class ModelCard(Record):
    encoder: str  # smp encoder of the U-Net
    in_channels: int  # the network's inputs: len(channels) x the normalisation's views
    outputs: list[str]  # output maps in order: a prefix of OUTPUTS (foreground first)
    channels: list[str]  # input channel names, in order (e.g. ["c1", "c5"])
    target: str  # label set predicted: cells | nuclei
    channel: str  # the target's own channel (the classical watershed split reads it)
    low_percentile: float  # per-channel percentile normalisation to [0, 1]
    high_percentile: float
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    decoder_channels: list[int] = field(default_factory=lambda: [128, 64, 32, 16, 16])
    architecture: str = "unet"  # pipeline.segment.network.ARCHITECTURES; cards of 2026-11: unet
    # Object diameter (px, inscribed) the network was trained at: inference rescales each
    # image whose objects are of another size to it (`pipeline.segment.scale`); 0: never.
    diameter: float = 0.0
    # Input normalisation (pipeline.preprocess.samples.NORMALISERS); older cards: percentile.
    normalisation: str = "percentile"
    # Where `postprocess` is tuned with flip TTA: the post-processing tuned for one network
    # pass on the same validation fields, used by a prediction that turns the flips off
    # (`for_prediction`); None: none tuned (the flips off, or a card written before 2026-12-07).
    postprocess_one_pass: PostprocessConfig | None = None

    @classmethod
    def from_dict(cls, d: Any, source: str = "model card") -> ModelCard:
        """Rebuild a card written by `to_dict`; DataError naming `source` if it is not one."""
        fields = cls.__dataclass_fields__
        required = {n for n, f in fields.items() if f.default is f.default_factory is MISSING}
        problem = ""
        if not isinstance(d, dict):
            problem = f"expected a mapping, got {type(d).__name__}"
        elif missing := sorted(required - set(d)):
            problem = f"missing {', '.join(missing)}"
        elif unknown := sorted(set(d) - set(fields)):
            problem = f"unknown keys {', '.join(unknown)}"
        elif not d["outputs"] or list(OUTPUTS[: len(d["outputs"])]) != d["outputs"]:
            problem = f"outputs {d['outputs']} must be the first 1 to 3 of {list(OUTPUTS)}"
        elif d.get("normalisation", "percentile") not in NORMALISATIONS:
            problem = f"normalisation {d['normalisation']!r} not one of {', '.join(NORMALISATIONS)}"
        else:
            post = d.get("postprocess") or {}
            one = d.get("postprocess_one_pass")
            try:
                return cls(
                    **{
                        **d,
                        "postprocess": from_dict(PostprocessConfig, post, "postprocess"),
                        "postprocess_one_pass": None
                        if one is None
                        else from_dict(PostprocessConfig, one, "postprocess_one_pass"),
                    }
                )
            except (TypeError, ValueError) as exc:
                problem = str(exc)
        raise DataError(
            f"{source}: not a valid cellseg model card ({problem}); use a model written by "
            "`cellseg train` or registered by `cellseg register`"
        )

    def for_prediction(
        self,
        flip_tta: bool | None = None,
        min_relative_intensity: float | None = None,
        min_field_contrast: float | None = None,
    ) -> ModelCard:
        """This card with ``postprocess.flip_tta``, ``min_relative_intensity`` and
        ``min_field_contrast`` set for one prediction (the model's own card is not changed); None
        keeps the card's. Turning the card's flips off takes `postprocess_one_pass`, the
        settings tuned for one pass, where the card has them."""
        post = self.postprocess
        if flip_tta is False and post.flip_tta and self.postprocess_one_pass:
            post = self.postprocess_one_pass
            tuned = ", ".join(f"{k} {getattr(post, k)}" for k in TUNED)
            log.info("flip_tta False: the card's post-processing tuned for one pass (%s)", tuned)
        asked = {
            "flip_tta": flip_tta,
            "min_relative_intensity": min_relative_intensity,
            "min_field_contrast": min_field_contrast,
        }
        changes = {k: v for k, v in asked.items() if v is not None and v != getattr(post, k)}
        for k, v in changes.items():
            log.info("%s %s (the model card says %s)", k, v, getattr(post, k))
        if post is self.postprocess and not changes:
            return self
        return replace(self, postprocess=replace(post, **changes))

    @property
    def channel_index(self) -> int:
        """Index of the target's own channel (`channel`) in the image's channels."""
        return self.channels.index(self.channel) if self.channel in self.channels else 0

    @property
    def arch(self) -> dict[str, Any]:
        """Arguments of `network.build_model` for this card."""
        return {
            "encoder": self.encoder,
            "in_channels": self.in_channels,
            "classes": len(self.outputs),
            "decoder_channels": list(self.decoder_channels),
            "architecture": self.architecture,
        }
