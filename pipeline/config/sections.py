"""The configuration schema: one dataclass per stage (``train``: `pipeline.config.training`),
composed into `PipelineConfig`.

Every rule about a value lives on its field (``metadata``, `pipeline.config.rules`):
``choices`` (a tuple, or the name of a method registry: ``layouts``, ``baselines``),
``min``/``max`` bounds and ``exclusive_min``.
`pipeline.config.checks` enforces them; `pipeline.config.params` turns them into CLI flags and
Airflow trigger-form drop-downs. Lengths and areas are in pixels of the images as ingested.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.config.rules import fraction, positive, rule
from pipeline.config.training import TrainConfig
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


@dataclass
class DataConfig:
    """Where the raw data comes from, what to segment, and how fields are split (at ingest).

    `source` is ``demo`` (generate the synthetic BBBC020-layout set), ``broad`` (download the
    layout's official archives), an ``http(s)://`` base URL holding the archives, ``s3://bucket/
    prefix`` (archives or an extracted tree), a local folder of ``.zip`` archives, one ``.zip``,
    or an extracted folder. Remote archives are checked against `sha256` (``name=<hex>``
    entries), then the layout's known sums, then a ``SHA256SUMS`` file beside them.
    """

    layout: str = rule("bbbc020", choices="layouts")
    source: str = "demo"
    target: str = rule("cells", choices=LABEL_SETS)  # label set to learn and score
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
    download_retries: int = rule(4, min=0)  # attempts after the first, backoff * 2**attempt
    download_backoff_s: float = rule(1.0, min=0.0)
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

    low_percentile: float = rule(1.0, min=0.0, max=100.0)
    high_percentile: float = rule(99.8, min=0.0, max=100.0)
    normalisation: str = rule("percentile", choices=NORMALISATIONS)


@dataclass
class WatershedConfig:
    """Marker-controlled watershed (pipeline/segment/watershed.py): the classical method's
    settings (``baseline.watershed``) and, as the same type, the split of a network's foreground
    (``postprocess.watershed``). The defaults suit the demo fields (256 x 320, cells ~40 px
    across): scale lengths up for full-size BBBC020 (1040 x 1388)."""

    sigma: float = 1.0  # Gaussian denoising before thresholding
    threshold: str = rule("otsu", choices=WATERSHED_THRESHOLDS)
    max_hole_size: int = 100  # holes up to this area are filled
    min_object_size: int = positive(30)  # smaller foreground objects are dropped
    marker_channel: str | None = "c5"  # nuclei as cell markers; None: distance peaks
    min_marker_size: int = 10  # smaller nucleus blobs are not markers
    min_distance: int = positive(5)  # between distance-transform peaks (nuclei markers)
    peak_sigma: float = 1.0  # smoothing of the distance map before peak finding


@dataclass
class BaselineConfig:
    """Classical methods run on the test split (pipeline/segment/classical.py)."""

    methods: list[str] = rule(
        factory=lambda: ["threshold55", "otsu", "gaussian_otsu", "adaptive_gaussian", "watershed"],
        choices="baselines",
    )
    channel: str | None = None  # None: the layout's channel for data.target (BBBC020 cells: c1)
    watershed: WatershedConfig = field(default_factory=WatershedConfig)


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

    instances: str = rule("network", choices=INSTANCE_METHODS)
    threshold: float = fraction(0.5)  # foreground probability
    seed_threshold: float = fraction(0.5)  # normalised distance of an object's core
    seed_h: float = fraction(0.05)  # >0: seeds are distance maxima this deep (h-maxima)
    seed_sigma: float = rule(4.0, min=0.0)  # training-scale px; blur before the h-maxima
    seed_shape: float = rule(0.0, min=0.0)  # weight of the foreground's distance transform
    flood: str = rule("distance", choices=FLOOD_CHOICES)  # the surface the seeds grow over
    min_relative_size: float = fraction(0.2)  # drop objects below this x the typical object
    min_relative_intensity: float = fraction(0.0)  # drop objects dimmer than this x the typical
    # a field none of whose objects stands this many noise deviations out of the background
    # around it is empty: its objects are what its normalised noise made the network draw, and
    # all are dropped (pipeline/segment/contrast.py); 0: never
    min_field_contrast: float = rule(2.0, min=0.0)
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

    border_policy: str = rule("ignore_border_predictions", choices=BORDER_POLICIES)
    border_margin: int = rule(0, min=0)  # crop only
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
    min_f1: float = rule(0.0, min=0.0, max=1.0)  # the network's own test F1 needed to register
    auto_promote: bool = True
    promote_metric: str = rule("f1", choices=GATE_METRICS)
    promote_margin: float = rule(0.0, min=0.0, max=1.0)


@dataclass
class TrackingConfig:
    backend: str = rule("wandb", choices=("wandb", "none"))
    mode: str = rule("offline", choices=("offline", "online", "disabled"))  # online: needs a key
    project: str = "cellseg"


@dataclass
class PredictConfig:
    """Segmenting new images (``cellseg predict``, the ``segment_new_images`` DAG)."""

    images: str = "data/inbox"  # folder of new images (TIF, PNG, JPEG, BMP)
    out: str = "data/segmented"  # labels, overlays, measurements
    model: str = "production"  # registry alias or version, or a model folder
    pixel_size_um: float | None = rule(None, min=0, exclusive_min=True)  # else the TIF's own
    # px: the inscribed diameter of the objects in these images (Cellpose's --diameter), when
    # the user knows it better than the per-image measurement; 0: measured on each image
    object_diameter: float = rule(0.0, min=0.0)
    # processes that cut instances, measure and write while the network runs on the next image
    # (pipeline/segment/batch.py); -1: one per CPU core but one on a GPU, none on a CPU
    workers: int = rule(-1, min=-1)
    # flip test-time augmentation: None keeps the model card's (`postprocess.flip_tta`, which
    # its post-processing was tuned with); false runs the network once per tile instead of four
    # times (faster, slightly different instances), true four times
    flip_tta: bool | None = None
    # objects fainter than this x the typical object are dropped: None keeps the model card's
    # (`postprocess.min_relative_intensity`, chosen on the validation fields); 0 keeps them all
    min_relative_intensity: float | None = rule(None, min=0.0, max=1.0, exclusive_max=True)
    # a field none of whose objects stands this many noise deviations out of its surroundings
    # keeps no object: None keeps the model card's (`postprocess.min_field_contrast`); 0: never
    min_field_contrast: float | None = rule(None, min=0.0)
    # torch.compile the network on a CPU (pipeline/segment/compiled.py): each pass about a fifth
    # shorter after about 13 s of compiling per field size, so for folders of many fields
    compile: bool = False
    # consecutive images of one size that go through the network as one batch
    # (pipeline/segment/steps.py); 0: 8 on a GPU, 1 on a CPU (where one field fills the cores)
    images_per_step: int = rule(0, min=0)
    # the channel of multi-channel or colour images a one-channel model reads (0 first; colour:
    # 0 red, 1 green, 2 blue), e.g. the nuclear stain of a composite; -1: the image as it is, a
    # colour one as its intensity (the largest of R, G and B)
    channel: int = rule(-1, min=-1)


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
