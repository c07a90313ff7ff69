"""The ``train`` section: the network, its training and its augmentation (a part of the
schema in `pipeline.config.sections`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.config.rules import fraction, positive, rule


@dataclass
class AugmentConfig:
    """Training augmentation (albumentations), covering what differs between microscopes:
    object scale, orientation, shape, intensity and gamma, noise and blur (and, optionally,
    how an image was exported: `jpeg`). Contrast inversion is never applied: fluorescent
    objects are bright on a dark background."""

    enabled: bool = True
    scale_min: float = positive(0.5)  # zoom range: objects 10 to 80 px across from 20-40 px ones
    scale_max: float = positive(2.0)
    elastic: float = fraction(0.2)  # probability of an elastic deformation
    intensity: float = fraction(0.8)  # probability of gamma / brightness-contrast changes
    noise: float = fraction(0.3)  # probability of Gaussian noise
    blur: float = fraction(0.3)  # probability of Gaussian blur
    texture: float = fraction(0.3)  # probability of uneven brightness inside objects
    # probability that each object is dimmed (to `dimmest`-100% of its contrast), for networks
    # meant for other microscopes: some nuclei ten times fainter than others (HeLa's) beside
    # evenly bright ones (GOWT1's). Off by default: a short training on one microscope pays for
    # it (the demo)
    dim: float = fraction(0.0)
    dimmest: float = rule(0.05, min=0.01, max=1.0)  # the faintest a dimmed object gets
    # a dimmed object whose mean ends up under this many noise widths above the background
    # (after noise and blur) is unknown to the loss, not an object; 0: always an object
    visible: float = rule(0.0, min=0.0)
    # probability that a crop is drawn around a pixel where two objects touch, wherever the
    # training fields hold any (HeLa's hold few touching pairs, its last frames many)
    contact_crops: float = fraction(0.0)
    # probability per object that a copy of another object of the crop is pasted touching it
    # (pipeline.train.paste): the pairs pressed together that a sparse training field lacks
    paste: float = fraction(0.0)
    # probability that a crop comes back as from a colour JPEG export (pipeline.train.jpeg): 8
    # bits over a random range in one lookup colour, block artefacts and all
    jpeg: float = fraction(0.0)


@dataclass
class TrainConfig:
    encoder: str = "resnet18"  # any smp encoder (checked before any work)
    architecture: str = "unet_fullres"  # pipeline.segment.network.ARCHITECTURES
    encoder_weights: str | None = None  # "imagenet" when online; None trains from scratch
    decoder_channels: list[int] = field(default_factory=lambda: [128, 64, 32, 16, 16])
    epochs: int = positive(6)
    steps_per_epoch: int = positive(20)
    batch_size: int = positive(8)
    crop_size: int = positive(128)  # a multiple of 32 (U-Net)
    lr: float = positive(2e-3)  # peak of the one-cycle schedule
    weight_decay: float = rule(1e-4, min=0.0)
    patience: int = rule(0, min=0)  # stop after this many epochs without improvement; 0: never
    # Validation, checkpoints and the kept model use an exponential moving average of the
    # weights with this decay (warmed up over the first steps; 0: the raw weights): one epoch's
    # luck no longer picks the model.
    ema: float = fraction(0.99)
    # Each epoch's validation (it picks the kept epoch and stops early) runs one network pass;
    # true: with the card's flips too (postprocess.flip_tta, four passes; about 4x its time on
    # a CPU). The post-processing is tuned after training with the card's flips either way.
    validation_flip_tta: bool = False
    contact_weight: float = rule(5.0, min=0.0)  # extra loss weight where objects touch
    # A third output: the band between touching objects (pipeline/train/targets.py), cut out
    # of the distance map before the seeds are found (pipeline/segment/postprocess.py).
    contact_map: bool = False
    device: str = rule("auto", choices=("auto", "cpu", "cuda"))
    precision: str = rule("auto", choices=("auto", "fp32", "bf16"))  # auto: bf16 on a GPU
    compile: bool = False  # torch.compile the network (GPU; slower start, faster steps)
    workers: int = rule(-1, min=-1)  # data loader processes; -1: CPU cores - 1 (0: inline)
    seed: int = 0
    # Object size (pipeline/segment/scale.py): every training field is zoomed so its objects
    # are `object_diameter` px across (inscribed; 0: the largest of the training groups'
    # medians, so no dataset is shrunk), and inference rescales new images to it.
    # rescale: false trains and predicts at native scale. `min_object_diameter` (px) floors the
    # automatic choice: objects smaller than it are enlarged to it in training, so a model
    # trained on small nuclei shrinks larger ones by less (40: 80 px nuclei at x0.5, and 10 px
    # ones still within inference's x4 enlargement).
    rescale: bool = True
    object_diameter: float = rule(0.0, min=0.0)
    min_object_diameter: float = rule(0.0, min=0.0)
    # How often training draws each group's fields against the others (1 each by default):
    # {name: weight}, a name matching a group or the start of its name (a CTC dataset in a
    # folder of datasets: {Fluo-N2DL-HeLa: 2}); the longest matching name applies
    group_weights: dict[str, float] = field(default_factory=dict)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
