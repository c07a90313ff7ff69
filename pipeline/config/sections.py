"""The configuration schema: one dataclass per stage, composed into `PipelineConfig`.

Every rule about a value lives on its field (``metadata``): ``choices`` (a tuple, or the name of
a method registry: ``layouts``, ``baselines``), ``min``/``max`` bounds and ``exclusive_min``.
`pipeline.config.loading` enforces them; `pipeline.config.params` turns them into CLI flags and
Airflow trigger-form drop-downs. Lengths and areas are in pixels of the images as ingested.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.conventions import LABEL_SETS, Record

# the keys of pipeline.preprocess.samples.NORMALISERS (the config must not import array code)
NORMALISATIONS = ("percentile", "rank", "percentile_rank")
WATERSHED_THRESHOLDS = ("otsu", "li", "triangle", "yen", "mean")  # scikit-image threshold_*
BORDER_POLICIES = ("none", "crop", "ignore_border_predictions", "ignore_border_objects")
# Network output -> instances: its own seeds (distance map), classical markers, or components.
INSTANCE_METHODS = ("network", "watershed", "components")
# What the network's seeds grow over (the keys of pipeline.segment.postprocess.FLOODS):
# objects part where the foreground probability dips, or along the distance map's valley.
FLOOD_CHOICES = ("distance", "foreground")


def _rule(default: Any = None, *, factory: Any = None, **metadata: Any) -> Any:
    """A dataclass field carrying its validation rule (see the module docstring)."""
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def positive(default: Any) -> Any:
    return _rule(default, min=0, exclusive_min=True)


def fraction(default: float) -> Any:  # [0, 1)
    return _rule(default, min=0.0, max=1.0, exclusive_max=True)


@dataclass
class DataConfig:
    """Where the raw data comes from, what to segment, and how fields are split (at ingest).

    `source` is ``demo`` (generate the synthetic BBBC020-layout set), ``broad`` (download the
    layout's official archives), an ``http(s)://`` base URL holding the archives, ``s3://bucket/
    prefix`` (archives or an extracted tree), a local folder of ``.zip`` archives, one ``.zip``,
    or an extracted folder. Remote archives are checked against `sha256` (``name=<hex>``
    entries), then the layout's known sums, then a ``SHA256SUMS`` file beside them.
    """

    layout: str = _rule("bbbc020", choices="layouts")
    source: str = "demo"
    target: str = _rule("cells", choices=LABEL_SETS)  # label set to learn and score
    # the dataset's channels the network reads, in order; empty (the default): all of them, as
    # the layout names them (bbbc020: c1, c5; ctc: fluo; folder: ch0)
    channels: list[str] = field(default_factory=list)
    # Does the ground truth label objects that touch the image edge? BBBC020 and the CTC silver
    # truth do not (37 of 3731 HeLa nuclei touch it); training then ignores unlabelled pixels
    # near the edge and validation ignores predictions touching it (pipeline/train/targets.py).
    edge_objects_labelled: bool = False
    demo_fields: int = positive(12)
    demo_height: int = positive(256)
    demo_width: int = positive(320)
    demo_seed: int = 0
    archives: list[str] = field(default_factory=list)  # archive names; [] = the layout's default
    sha256: list[str] = field(default_factory=list)  # "name=<64 hex>" expected sums (override)
    cache_dir: str | None = None  # downloads; None: <data_dir>/raw/downloads; relative: in data_dir
    s3_endpoint_url: str | None = None  # e.g. http://127.0.0.1:8333 for a local S3 server
    download_retries: int = _rule(4, min=0)  # attempts after the first, backoff * 2**attempt
    download_backoff_s: float = _rule(1.0, min=0.0)
    download_timeout_s: float = positive(60.0)  # per read of the connection
    download_deadline_s: float = positive(3600.0)  # per file, retries included: stops trickles
    max_extract_gb: float = positive(50.0)  # an archive may expand to at most this much
    max_expansion_ratio: float = positive(1000.0)  # extracted / packed size (zip bombs)
    val_fraction: float = fraction(0.2)  # of labelled fields, by field (never by pixel or tile)
    test_fraction: float = fraction(0.2)
    split_seed: int = 0


@dataclass
class ValidateConfig:
    """Thresholds of the data checks that gate a run (suite: pipeline/validate/suite.py).

    A threshold left at ``None`` takes the default of the dataset's layout
    (``suite.LAYOUT_DEFAULTS``: bbbc020, ctc, folder); a value set here applies to every layout.
    `severity` moves a check between levels, e.g. ``["mask_coverage_in_range=critical"]``;
    `fail_on_warning` treats every failed warning as critical.
    """

    min_labelled_fields: int = 3  # fields with the target labels needed to train
    max_blank_std: float = 1.0  # an image channel with a std below this (in raw units) is blank
    max_saturated_fraction: float = 0.05  # of pixels at the dtype maximum, per channel
    allowed_dtypes: list[str] = field(default_factory=lambda: ["uint8", "uint16"])
    min_mask_coverage: float | None = None  # foreground fraction of a target mask
    max_mask_coverage: float | None = None
    min_objects: int | None = None  # objects per labelled field
    max_objects: int | None = None
    min_object_area: int | None = None  # pixels; smaller objects are fragments
    max_object_fraction: float | None = None  # of the field's area; larger objects are implausible
    object_size_mostly: float | None = None  # share of objects that must be plausible in size
    severity: list[str] = field(default_factory=list)  # "check_name=critical|warning"
    fail_on_warning: bool = False


@dataclass
class PreprocessConfig:
    """Per-channel normalisation to [0, 1] (training and inference alike; the model card keeps
    it): ``percentile`` (the low..high percentiles to 0..1) or ``rank`` (each pixel's rank in
    its channel, unchanged by a display lookup; the percentiles are then unused)."""

    low_percentile: float = _rule(1.0, min=0.0, max=100.0)
    high_percentile: float = _rule(99.8, min=0.0, max=100.0)
    normalisation: str = _rule("percentile", choices=NORMALISATIONS)


@dataclass
class WatershedConfig:
    """Marker-controlled watershed (pipeline/segment/watershed.py): the classical method's
    settings (``baseline.watershed``) and, as the same type, the split of a network's foreground
    (``postprocess.watershed``). The defaults suit the demo fields (256 x 320, cells ~40 px
    across): scale lengths up for full-size BBBC020 (1040 x 1388)."""

    sigma: float = 1.0  # Gaussian denoising before thresholding
    threshold: str = _rule("otsu", choices=WATERSHED_THRESHOLDS)
    max_hole_size: int = 100  # holes up to this area are filled
    min_object_size: int = positive(30)  # smaller foreground objects are dropped
    marker_channel: str | None = "c5"  # nuclei as cell markers; None: distance peaks
    min_marker_size: int = 10  # smaller nucleus blobs are not markers
    min_distance: int = positive(5)  # between distance-transform peaks (nuclei markers)
    peak_sigma: float = 1.0  # smoothing of the distance map before peak finding


@dataclass
class BaselineConfig:
    """Classical methods run on the test split (pipeline/segment/classical.py)."""

    methods: list[str] = _rule(
        factory=lambda: ["threshold55", "otsu", "gaussian_otsu", "adaptive_gaussian", "watershed"],
        choices="baselines",
    )
    channel: str | None = None  # None: the layout's channel for data.target (BBBC020 cells: c1)
    watershed: WatershedConfig = field(default_factory=WatershedConfig)


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
    dimmest: float = _rule(0.05, min=0.01, max=1.0)  # the faintest a dimmed object gets
    # a dimmed object whose mean ends up under this many noise widths above the background
    # (after noise and blur) is unknown to the loss, not an object; 0: always an object
    visible: float = _rule(0.0, min=0.0)
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
    weight_decay: float = _rule(1e-4, min=0.0)
    patience: int = _rule(0, min=0)  # stop after this many epochs without improvement; 0: never
    # Validation, checkpoints and the kept model use an exponential moving average of the
    # weights with this decay (warmed up over the first steps; 0: the raw weights): one epoch's
    # luck no longer picks the model.
    ema: float = fraction(0.99)
    # Each epoch's validation (it picks the kept epoch and stops early) runs one network pass;
    # true: with the card's flips too (postprocess.flip_tta, four passes; about 4x its time on
    # a CPU). The post-processing is tuned after training with the card's flips either way.
    validation_flip_tta: bool = False
    contact_weight: float = _rule(5.0, min=0.0)  # extra loss weight where objects touch
    # A third output: the band between touching objects (pipeline/train/targets.py), cut out
    # of the distance map before the seeds are found (pipeline/segment/postprocess.py).
    contact_map: bool = False
    device: str = _rule("auto", choices=("auto", "cpu", "cuda"))
    precision: str = _rule("auto", choices=("auto", "fp32", "bf16"))  # auto: bf16 on a GPU
    compile: bool = False  # torch.compile the network (GPU; slower start, faster steps)
    workers: int = _rule(-1, min=-1)  # data loader processes; -1: CPU cores - 1 (0: inline)
    seed: int = 0
    # Object size (pipeline/segment/scale.py): every training field is zoomed so its objects
    # are `object_diameter` px across (inscribed; 0: the largest of the training groups'
    # medians, so no dataset is shrunk), and inference rescales new images to it.
    # rescale: false trains and predicts at native scale. `min_object_diameter` (px) floors the
    # automatic choice: objects smaller than it are enlarged to it in training, so a model
    # trained on small nuclei shrinks larger ones by less (40: 80 px nuclei at x0.5, and 10 px
    # ones still within inference's x4 enlargement).
    rescale: bool = True
    object_diameter: float = _rule(0.0, min=0.0)
    min_object_diameter: float = _rule(0.0, min=0.0)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class PostprocessConfig:
    """How the network's output becomes instance labels; written into the model card, so
    `cellseg predict` and evaluation post-process exactly as configured for training.

    ``instances``: ``network`` (default) uses the network alone: its foreground, split at seeds
    taken from its own distance map (cores where the predicted distance exceeds
    ``seed_threshold``, or, when ``seed_h`` > 0, its maxima at least ``seed_h`` deep after a
    Gaussian blur of ``seed_sigma`` px at the training scale; ``seed_shape`` > 0 mixes in the
    foreground's own shape, its distance transform in object radii, with that weight), objects
    smaller than ``min_relative_size`` times the image's typical object (area-weighted median)
    dropped (debris and fragments, whatever the magnification), and objects whose mean intensity
    is under ``min_relative_intensity`` times the typical object's (dim, out-of-focus nuclei an
    annotation may leave out; 0 keeps them); a field none of whose objects stands
    ``min_field_contrast`` noise deviations out of the background around it keeps none (they
    are what its normalised noise made the network draw); the seeds grow over the
    distance map (``flood: distance``) or the foreground probability (``foreground``, so
    touching objects part where it dips); ``watershed`` splits its
    foreground with the classical method's markers (nuclei for cells, distance peaks for nuclei;
    settings in `watershed`); ``components`` takes connected components. Evaluation reports
    ``unet`` (the network's own instances) and ``unet_watershed`` (with the classical split), so
    the model is never credited with post-processing. ``flip_tta`` averages the network's
    outputs over the image and its three flips (test-time augmentation: smoother maps, four
    times the network time).
    """

    instances: str = _rule("network", choices=INSTANCE_METHODS)
    threshold: float = fraction(0.5)  # foreground probability
    seed_threshold: float = fraction(0.5)  # normalised distance of an object's core
    seed_h: float = fraction(0.05)  # >0: seeds are distance maxima this deep (h-maxima)
    seed_sigma: float = _rule(4.0, min=0.0)  # training-scale px; blur before the h-maxima
    seed_shape: float = _rule(0.0, min=0.0)  # weight of the foreground's distance transform
    flood: str = _rule("distance", choices=FLOOD_CHOICES)  # the surface the seeds grow over
    min_relative_size: float = fraction(0.2)  # drop objects below this x the typical object
    min_relative_intensity: float = fraction(0.0)  # drop objects dimmer than this x the typical
    # a field none of whose objects stands this many noise deviations out of the background
    # around it is empty: its objects are what its normalised noise made the network draw, and
    # all are dropped (pipeline/segment/contrast.py); 0: never
    min_field_contrast: float = _rule(2.0, min=0.0)
    tune_seed_threshold: bool = True  # after training, pick seed, size, intensity cuts on val
    min_object_size: int = positive(30)  # px; smaller objects (specks) are dropped
    tile_size: int = positive(1536)  # inference tiles (multiple of 32) for larger fields
    tile_overlap: float = fraction(0.25)
    flip_tta: bool = False  # average the outputs over the 4 flips (4x the network time)
    watershed: WatershedConfig = field(default_factory=WatershedConfig)


@dataclass
class EvaluateConfig:
    """Scoring on the test split (metric definitions in pipeline/evaluate/metrics.py).

    BBBC020 annotators skipped objects touching the border, so score with ``crop`` (drop
    `border_margin` px from each edge, about one cell diameter: ~150 px at full size) or
    ``ignore_border_predictions`` (drop predicted objects touching the image edge).
    ``ignore_border_objects`` also drops the true objects touching it: for labels that skip
    edge objects but not all of them (the CTC silver truth keeps 37 of its 3731 HeLa nuclei
    there), whose predictions touch the edge too. ``none`` scores whole images, fair only for
    ground truth that labels every object (`data.edge_objects_labelled`). `border_margin` is
    used by crop only.
    """

    border_policy: str = _rule("ignore_border_predictions", choices=BORDER_POLICIES)
    border_margin: int = _rule(0, min=0)  # crop only
    report_overlays: int = 4  # test fields shown side by side (all methods) in report.html


GATE_METRICS = ("f1", "map", "fg_iou", "aji", "fg_dice")  # higher is better, in [0, 1]


@dataclass
class RegistryConfig:
    """Versions, aliases and the promotion gate (pipeline/registry). A registered version is
    aliased ``staging``; it becomes ``production`` when `auto_promote` is on and its network
    row beats production's on `promote_metric` by more than `promote_margin` on the same test
    data (production is re-scored on this run's test fields when it was scored on others)."""

    uri: str = "registry"  # local folder or s3://bucket/prefix
    model_name: str = "cellseg-unet"
    s3_endpoint_url: str | None = None  # e.g. http://127.0.0.1:8333 for a local S3 server
    min_f1: float = _rule(0.0, min=0.0, max=1.0)  # the network's own test F1 needed to register
    auto_promote: bool = True
    promote_metric: str = _rule("f1", choices=GATE_METRICS)
    promote_margin: float = _rule(0.0, min=0.0, max=1.0)


@dataclass
class TrackingConfig:
    backend: str = _rule("wandb", choices=("wandb", "none"))
    mode: str = _rule("offline", choices=("offline", "online", "disabled"))  # online: needs a key
    project: str = "cellseg"


@dataclass
class PredictConfig:
    """Segmenting new images (``cellseg predict``, the ``segment_new_images`` DAG)."""

    images: str = "data/inbox"  # folder of new images (TIF, PNG, JPEG, BMP)
    out: str = "data/segmented"  # labels, overlays, measurements
    model: str = "production"  # registry alias or version, or a model folder
    pixel_size_um: float | None = _rule(None, min=0, exclusive_min=True)  # else the TIF's own
    # px: the inscribed diameter of the objects in these images (Cellpose's --diameter), when
    # the user knows it better than the per-image measurement; 0: measured on each image
    object_diameter: float = _rule(0.0, min=0.0)
    # processes that cut instances, measure and write while the network runs on the next image
    # (pipeline/segment/batch.py); -1: one per CPU core but one on a GPU, none on a CPU
    workers: int = _rule(-1, min=-1)
    # flip test-time augmentation: None keeps the model card's (`postprocess.flip_tta`, which
    # its post-processing was tuned with); false runs the network once per tile instead of four
    # times (faster, slightly different instances), true four times
    flip_tta: bool | None = None
    # objects fainter than this x the typical object are dropped: None keeps the model card's
    # (`postprocess.min_relative_intensity`, chosen on the validation fields); 0 keeps them all
    min_relative_intensity: float | None = _rule(None, min=0.0, max=1.0, exclusive_max=True)
    # a field none of whose objects stands this many noise deviations out of its surroundings
    # keeps no object: None keeps the model card's (`postprocess.min_field_contrast`); 0: never
    min_field_contrast: float | None = _rule(None, min=0.0)
    # torch.compile the network on a CPU (pipeline/segment/compiled.py): each pass about a fifth
    # shorter after about 13 s of compiling per field size, so for folders of many fields
    compile: bool = False
    # consecutive images of one size that go through the network as one batch
    # (pipeline/segment/steps.py); 0: 8 on a GPU, 1 on a CPU (where one field fills the cores)
    images_per_step: int = _rule(0, min=0)
    # the channel of multi-channel or colour images a one-channel model reads (0 first; colour:
    # 0 red, 1 green, 2 blue), e.g. the nuclear stain of a composite; -1: the image as it is, a
    # colour one as its intensity (the largest of R, G and B)
    channel: int = _rule(-1, min=-1)


@dataclass
class PathsConfig:
    data_dir: str = "data"  # raw downloads and dataset versions
    runs_dir: str = "runs"  # one folder per pipeline run


@dataclass
class PipelineConfig(Record):
    data: DataConfig = field(default_factory=DataConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
