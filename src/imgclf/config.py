"""Small frozen settings objects, one per pipeline stage; each can be printed and saved as JSON."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

# The backbone used when none is named: its ImageNet weights install with imgclf (offline).
DEFAULT_BACKBONE = "efficientnet_lite0"
RESIZE_METHODS = ("crop", "squish", "pad")
AUGMENT_POLICIES = (None, "randaugment", "trivialaugment")
TRAIN_MODES = ("auto", "probe", "fine_tune")
# The arithmetic of training steps (TrainConfig.precision).
PRECISIONS = ("auto", "float32", "bfloat16")
# What can run the network outside training (InferenceConfig.runtime).
RUNTIMES = ("auto", "onnx", "torch")
# Resampling filters a picture can be resized with (InputConfig.interpolation).
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


def _number(value: Any) -> bool:
    """A finite int or float (not a bool, not NaN or infinity)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# probe and auto modes read pictures at this multiple of the backbone's pretrained input size
# (rounded to 32 pixels; 224 -> 288 for efficientnet_lite0) unless the data sets image_size.
# A network pretrained on random-resized crops saw objects larger than a center crop of the
# same size shows them, so it does better tested at a higher resolution (Touvron et al. 2019,
# "Fixing the train-test resolution discrepancy"). Hymenoptera probe, 5-fold cross-validated
# log loss on the training pictures alone: 224 0.093, 256 0.088, 288 0.073, 320 0.071
# (320 costs 2x the compute of 224, 288 1.65x); validation accuracy 0.948, 0.961, 0.967, 0.961.
PROBE_SIZE_FACTOR = 1.3


def probe_image_size(pretrained_size: int) -> int:
    """Input size of probe and auto modes: PROBE_SIZE_FACTOR larger, a multiple of 32."""
    return max(32, round(pretrained_size * PROBE_SIZE_FACTOR / 32) * 32)


@dataclass(frozen=True)
class InputConfig:
    """What a backbone expects as input, read from its pretrained config (never hard-coded).

    Example:
        >>> InputConfig(image_size=224, mean=(0.5,) * 3, std=(0.5,) * 3).resize_size
        256
    """

    # Side of the square picture the network sees, in pixels.
    image_size: int
    # Per-channel mean and standard deviation used to normalise pixels scaled to 0..1.
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # Resampling filter for resizing: "bicubic", "bilinear" or "nearest".
    interpolation: str = "bicubic"
    # Validation pictures are resized to image_size / crop_fraction, then center-cropped.
    crop_fraction: float = 0.875
    # Side of the random crops fine-tuning trains on; None: image_size. Training on smaller
    # crops than the network is tested on is faster and no less accurate (Touvron et al.
    # 2019): random crops already show objects larger than a center crop does.
    train_size: int | None = None
    # How a picture becomes square: "crop" (shorter side to image_size / crop_fraction, then
    # the center; random crops in training), "squish" (stretch) or "pad" (fit, black borders).
    resize: str = "crop"

    def __post_init__(self):
        if self.resize not in RESIZE_METHODS:
            raise ValueError(f"resize must be one of {RESIZE_METHODS}, not {self.resize!r}")
        if not _integer(self.image_size) or self.image_size < 1:
            raise ValueError(f"image_size must be at least 1 pixel, not {self.image_size!r}")
        if self.train_size is not None and (not _integer(self.train_size) or self.train_size < 1):
            raise ValueError(f"train_size must be at least 1 pixel, not {self.train_size!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, not "
                             f"{self.interpolation!r}")
        if not _number(self.crop_fraction) or not 0 < self.crop_fraction <= 1:
            raise ValueError(f"crop_fraction must be in (0, 1], not {self.crop_fraction!r}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) != 3 or not all(_number(value) for value in values):
                raise ValueError(f"{name} must be three numbers, not {values!r}")
        if not all(value > 0 for value in self.std):
            raise ValueError(f"std must be above 0 (it divides), not {self.std!r}")

    @property
    def resize_size(self) -> int:
        """Shorter side before the center crop at evaluation time (timm's convention)."""
        return int(self.image_size / self.crop_fraction)

    @classmethod
    def from_timm(cls, data_config: dict[str, Any]) -> InputConfig:
        """Build from timm's ``resolve_model_data_config`` output."""
        return cls(
            image_size=int(data_config["input_size"][-1]),
            mean=tuple(float(x) for x in data_config["mean"]),  # type: ignore[arg-type]
            std=tuple(float(x) for x in data_config["std"]),  # type: ignore[arg-type]
            interpolation=str(data_config.get("interpolation", "bicubic")),
            crop_fraction=float(data_config.get("crop_pct", 0.875)),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> InputConfig:
        return cls(
            image_size=int(values["image_size"]),
            mean=tuple(values["mean"]),  # type: ignore[arg-type]
            std=tuple(values["std"]),  # type: ignore[arg-type]
            interpolation=str(values["interpolation"]),
            crop_fraction=float(values["crop_fraction"]),
            train_size=int(values["train_size"]) if values.get("train_size") else None,
            resize=str(values.get("resize", "crop")),
        )


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation; the defaults follow fastai's ``aug_transforms`` (max_warp etc.).

    Example:
        >>> AugmentConfig(rotate=0, policy="trivialaugment")
    """

    # Random resized crop keeps at least this fraction of the picture's area.
    min_scale: float = 0.5
    # Mirror left-right half of the time (turn off for text, digits, asymmetric objects).
    flip: bool = True
    # Maximum rotation in degrees, either way.
    rotate: float = 10.0
    # Maximum zoom factor (1.0 = none).
    zoom: float = 1.1
    # Perspective distortion strength, 0..1 (0 = none).
    warp: float = 0.2
    # Maximum relative change of brightness, contrast and saturation.
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.0
    # Chance that each of rotate/zoom, warp and colour changes is applied to a picture.
    probability: float = 0.75
    # An automatic policy on top: None, "randaugment" or "trivialaugment".
    policy: str | None = None

    def __post_init__(self):
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], not {self.min_scale}")
        if self.zoom < 1:
            raise ValueError(f"zoom must be >= 1.0, not {self.zoom}")
        if self.policy not in AUGMENT_POLICIES:
            raise ValueError(f"policy must be one of {AUGMENT_POLICIES}, not {self.policy!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DataConfig:
    """How pictures are split, sized and batched."""

    # Fraction of each class held out for validation when no split is given by folders/columns.
    valid_fraction: float = 0.2
    # Seed of the split, the shuffling and the augmentation.
    seed: int = 42
    # Pictures per training step. 16 gives twice the updates of 32 on small data; batch norm
    # statistics stay frozen during fine-tuning, so small batches do no harm.
    batch_size: int = 16
    # Draw every class equally often in training (weighted sampling) for unbalanced data.
    balance: bool = False
    # DataLoader worker processes; None: none on 2 cores or fewer (pictures are read in the
    # network's process), else one fewer than the cores, at most 4 (data.datasets).
    num_workers: int | None = None
    # Keep a resized copy of every training picture on disk so later epochs skip decoding big
    # JPEGs, and every picture's square view at its test size (uint8, 249 KB at 288 px), so
    # no reader decodes an original twice; both under $IMGCLF_CACHE, safe to delete.
    cache: bool = True
    # Multi-label data: the separator of the labels in a CSV's label column (" " or ";", as
    # fastai's label_delim); None: one label per picture. Saved, so evaluate reads alike.
    label_delim: str | None = None

    def __post_init__(self):
        if not 0 <= self.valid_fraction < 1:
            raise ValueError(f"valid_fraction must be in [0, 1), not {self.valid_fraction}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class HeadConfig:
    """The new layers on top of the backbone's features."""

    # "avg": global average pooling; "concat": average and max pooling side by side (fastai).
    pool: str = "avg"
    # Dropout before the final linear layer.
    dropout: float = 0.2
    # Width of an extra hidden layer (with batch norm and ReLU); 0 for none.
    hidden: int = 0

    def __post_init__(self):
        if self.pool not in ("avg", "concat"):
            raise ValueError(f"pool must be 'avg' or 'concat', not {self.pool!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# bench/unknown.py, hymenoptera (auto mode) against 99 ImageNet photos of neither ants nor
# bees, threshold at 95% of the validation pictures: AUROC / strangers flagged / accuracy on
# the accepted validation pictures (plain accuracy 0.967):
#   softmax (max probability) 0.937 / 0.60 / 0.993; energy and max logit the same;
#   Mahalanobis (shared, Ledoit-Wolf) 0.898 / 0.28 / 0.972;
#   k-nearest-neighbour distance, k = 1, 5, 10, 20: 0.994, 0.996, 0.995, 0.994 / 0.99 / 0.966;
#   the same, of the predicted class, k = 5: 0.996 / 0.99 / 0.966;
#   and + 0.2 x (1 - top probability): 0.991 / 0.99 / 0.972 (the one meeting every target:
#   the distance alone keeps the validation pictures the classifier gets wrong, which look
#   like ants and bees; the softmax term rejects the ambiguous ones first).
KNN_K = 5
SOFTMAX_WEIGHT = 0.2
# A multi-label model's bank keeps each picture's labels as the bits of its `labels` entry, up
# to this many labels (a 64-bit integer, sign bit spared)
MAX_LABEL_BITS = 62
# The most neighbours a detector may count: more than its bank holds of a class means nothing.
MAX_NEIGHBOURS = 1000
# The share of in-domain pictures accepted by default: one in 50 of the user's own pictures
# is called unknown. bench/trust.py, 20 seeds of hymenoptera and of blood-cells: every far
# stranger (ImageNet photos) flagged at 98% on every seed, as at 95%, where one in 20 of the
# user's pictures (a bee at 99.9%, in the main job) was turned away for no stranger more.
DEFAULT_ACCEPTANCE = 0.98


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained; printed at the start of a run and saved with the model."""

    # "auto": a probe alone for tiny data (a class under 20 training pictures), else the probe
    # then the whole network from the probed head, keeping the better; "probe": a head fitted
    # on cached embeddings, in seconds; "fine_tune": head epochs, then the whole network.
    mode: str = "auto"
    # Epochs of the whole network (after the head-only epochs). None: 4 for fine_tune
    # (fastai's fine_tune(4)); 6 for auto, in one schedule that the time limit shortens to
    # what fits (plan.AUTO_EPOCHS: blood-cells, seeds 42-44, mean validation accuracy 0.951
    # against 0.940 with 4 epochs, the probe's 0.906).
    epochs: int | None = None
    # Head-only epochs first, with the backbone frozen. Two let the new head settle before
    # the backbone moves (hymenoptera: better validation loss than fastai's one).
    freeze_epochs: int = 2
    # Peak learning rate of the head-only epochs.
    head_learning_rate: float = 1e-2
    # Peak learning rate of the head when the whole network trains; earlier layer groups get
    # 1/10 and 1/100 of it (fastai's slice(lr/100, lr)).
    learning_rate: float = 1e-3
    # AdamW weight decay.
    weight_decay: float = 0.01
    # Spread 0.1 of each target's probability over the other classes (0 = off).
    label_smoothing: float = 0.0
    # Clip the gradient norm to this value (0 = off): guards against a bad batch.
    clip_gradient: float = 1.0
    # Fraction of each one-cycle schedule spent warming up (fastai: 0.25).
    warmup_fraction: float = 0.25
    # Which validation figure decides the best epoch: "valid_loss", "accuracy" or "error_rate".
    monitor: str = "valid_loss"
    # End with the best epoch's weights rather than the last. Off by default: one-cycle ends
    # on its best weights as a rule, and on 100-200 validation pictures "best" is mostly noise
    # (hymenoptera: the lowest loss fell on an epoch 2 points less accurate). The best epoch
    # is always kept as best.imgclf.
    restore_best: bool = False
    # auto mode: stop after this many complete whole-network schedules in a row that ended
    # no better (by monitor) than the best point so far (the probe's, to begin with), keeping
    # the best; 0 = run every phase (and no probe is kept for leaving too little to gain,
    # steps.probe_is_right). Only points where a schedule has annealed are judged: an
    # epoch that ends at the schedule's peak rate says little of where it will end (a
    # 10-class set of product photos: 0.42 validation loss after such an epoch against the
    # probe's 0.41, and 2 points more test accuracy once its schedule had run).
    patience: int = 1
    # Seconds the whole run may take (AutoGluon's time_limit): whole-network epochs are
    # planned to fit, from the cost of the first batches (plan.fit_epochs). None: 10 minutes
    # for auto mode on the CPU (plan.DEFAULT_TIME_LIMIT), no limit otherwise; 0: no limit.
    time_limit: float | None = None
    # Seed for the head's initialisation and the order and augmentation of batches.
    seed: int = 42
    # "cpu", "cuda", "mps", or None for the fastest one present.
    device: str | None = None
    # Arithmetic of the training steps: "float32", "bfloat16" (autocast: matrix products in
    # bfloat16, weights and their updates in float32) or "auto": bfloat16 on a GPU that has
    # it, and on a CPU only where its instructions have it (AVX-512 BF16 or AMX, asked of the
    # CPU when a run starts, never assumed) and it pays (steps.BF16_ON_CPU). A device
    # without it always trains in float32, whatever this says. The run's settings say which.
    precision: str = "auto"
    # Keep the backbone's early layers (the first of the layer groups, which discriminative
    # rates give 1/100 of the head's rate) frozen while the whole network trains: no
    # gradients through the largest pictures in the network, 2x the training pictures a
    # second on a CPU (bench/accuracy.py). None: yes on a CPU, no on a GPU.
    freeze_early: bool | None = None
    # What runs freeze_early's frozen layers, which only ever compute forward: "auto"
    # (onnxruntime on a CPU where it is installed, else PyTorch), "torch" (PyTorch) or "onnx"
    # (onnxruntime, an error without it). onnxruntime runs them 4.6x as fast on 2 cores; auto's
    # default blood-cells runs then take 467-471 s against 480-506 s and end at the same
    # accuracy (seeds 42-44: 0.940, 0.948, 0.942 against 0.950, 0.944, 0.938; losses 0.187
    # against 0.183 on average; bench/accuracy.py --runs auto,auto-torch, docs/training.md).
    # The two runtimes differ by about 1e-5, which fine-tuning turns into different runs, not
    # better or worse ones. The run's settings say which ran them.
    frozen_runtime: str = "auto"
    # Progressive resizing (fastai's): a whole-network phase trains its epochs but the last
    # on smaller crops (plan.PROGRESSIVE_FACTOR of the training size: 176 for 224), 1.1-1.4x
    # the training pictures a second (hymenoptera 41.6 against 38.1, blood-cells 51.2
    # against 36.1); the last epoch, where the schedule anneals and the run is judged, trains
    # at full size. Off by default: on blood-cells it cost what fine-tuning gained (auto's
    # 4-epoch schedule ended at validation loss 0.36 with 3 epochs at 176, against 0.21 at
    # 224, and the probe's 0.28 was kept; bench/accuracy.py, docs/training.md).
    progressive_resizing: bool = False
    # With freeze_early (auto mode on a CPU): half the epochs of a whole-network schedule
    # train again on an earlier epoch's augmented pictures as the frozen early layers left
    # them (stored, reshuffled; training/frozen.py), with no decoding, augmenting or frozen
    # layers to run; the last epoch, the one auto judges, always reads new pictures
    # (plan.reuses). Training pictures a second at 224 px over a schedule, the frozen layers
    # on onnxruntime, 2.58x and 3.13x the code before #28 (blood-cells 49.2 against 19.1,
    # hymenoptera 50.1 against 16.0; bench/accuracy.py --steps 40 --baseline).
    # Blood-cells seeds 42-44, PyTorch running the frozen layers, ended at validation accuracy
    # 0.950, 0.944, 0.938 in 480-506 s (each at least 3 points over the probe's 0.906),
    # against 0.933, 0.967, 0.950 with every epoch reading its pictures (519-598 s): a mean
    # 0.6 points lower, within what seeds move it
    # (bench/accuracy.py, bench/README.md). False: every epoch reads its pictures; None: only
    # when the time limit would otherwise cut the schedule short. One process, no progressive
    # resizing.
    reuse_views: bool | None = True
    # Share of in-domain pictures the "unknown" detector accepts: its threshold is set so that
    # at least this share of the validation pictures is not called unknown (a conformal
    # quantile, calibration.threshold_for; with too few of them to place it,
    # calibration.too_few_beyond, the training pictures count too, each left out of the
    # detector's bank in turn).
    # InferenceConfig.acceptance changes it when a model is loaded.
    acceptance: float = DEFAULT_ACCEPTANCE

    def __post_init__(self):
        if self.epochs is not None and (self.epochs < 0 or self.epochs + self.freeze_epochs == 0):
            raise ValueError("epochs and freeze_epochs must be >= 0, and not both 0")
        if self.freeze_epochs < 0:
            raise ValueError("epochs and freeze_epochs must be >= 0, and not both 0")
        if self.learning_rate <= 0 or self.head_learning_rate <= 0:
            raise ValueError("learning rates must be positive")
        if not 0 < self.acceptance <= 1:
            raise ValueError(f"acceptance must be in (0, 1], not {self.acceptance}")
        if self.mode not in TRAIN_MODES:
            raise ValueError(f"mode must be one of {', '.join(TRAIN_MODES)}, not {self.mode!r}")
        if self.time_limit is not None and self.time_limit < 0:
            raise ValueError(f"time_limit must be >= 0 seconds, not {self.time_limit}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not "
                             f"{self.precision!r}")
        if self.frozen_runtime not in RUNTIMES:
            raise ValueError(f"frozen_runtime must be one of {', '.join(RUNTIMES)}, not "
                             f"{self.frozen_runtime!r}")
        if self.monitor not in ("valid_loss", "accuracy", "error_rate"):
            raise ValueError(f"monitor must be valid_loss, accuracy or error_rate, not "
                             f"{self.monitor!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CollectConfig:
    """How images are searched for, downloaded, checked and kept by ``collect``."""

    # Pictures to keep per class (pictures already in the class folder count).
    per_class: int = 100
    # Pictures larger than this (longer side, pixels) are shrunk before saving; None keeps
    # originals. 1024 is 4x what a 224-256 pixel backbone sees, and ~10x less disk.
    max_side: int | None = 1024
    # Pictures smaller than this (shorter side) are icons or thumbnails: skipped.
    min_side: int = 64
    # Downloads larger than this many megabytes are abandoned.
    max_megabytes: float = 20.0
    # Downloads at once. Providers' image hosts are many different servers.
    workers: int = 8
    # Seconds to connect, and between two pieces of an answer; a whole download gets 4x.
    timeout: float = 15.0
    # Further attempts after a timeout, a dropped connection, HTTP 429 or 5xx.
    retries: int = 3
    # Perceptual-hash (pHash, 64 bits) distance at or below which two pictures are the same
    # photo resized, re-compressed or lightly edited; unrelated photos differ by ~32.
    duplicate_distance: int = 6

    def __post_init__(self):
        if self.per_class < 1:
            raise ValueError(f"per_class must be at least 1, not {self.per_class}")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, not {self.workers}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CleanConfig:
    """How ``find_issues`` (``imgclf clean``) flags pictures, and how sure --auto must be."""

    # Cross-validation folds for each picture's out-of-fold class probabilities.
    folds: int = 5
    # Regularisation (scikit-learn's C) of those folds' logistic regressions, on standardised
    # features, and how sure they must be of another class to flag a label that cleanlab's
    # pick (confident learning, prune_by_noise_rate) left out. bench/clean_labels.py, 20
    # seeded damages of hymenoptera (10% flipped), raw features: C 0.1 alone (the old rule)
    # precision 0.856 recall 0.881; C 0.03 alone 0.892 / 0.875; C 0.03 with 0.65: 0.846 /
    # 0.935 (0.7: 0.885 / 0.908). Standardised (10x faster on blood-cells), bench/trust.py,
    # precision / recall, hymenoptera 20 seeds and blood-cells 3: C 0.001 0.856 / 0.883 and
    # 0.660 / 0.826; 0.003 0.833 / 0.906 and 0.693 / 0.845; 0.01 0.801 / 0.925 and 0.655 /
    # 0.851 (raw C 0.03: 0.848 / 0.917 and, 20 seeds, 0.670 / 0.838).
    regularisation: float = 0.003
    label_confidence: float = 0.65
    # A second backbone whose embeddings join the first's for the label and off-topic
    # findings (None: one). efficientnet_lite2, 20 seeds of bench/trust.py: blood-cells label
    # precision 0.688 -> 0.740, hymenoptera recall 0.906 -> 0.938, at about 2.2x the time
    # (bench/clean.py --second-backbone; every figure in bench/README.md).
    second_backbone: str | None = None
    # Two pictures are one when their perceptual hashes (pHash, 64 bits) differ in at most
    # this many bits (re-encoded or resized copies: 0-2; distinct photos: 14 and more)...
    duplicate_distance: int = 8
    # ... or when their embeddings, square-rooted and centred on the dataset's mean, are at
    # least this similar (cosine; hymenoptera: cropped copies 0.80-0.91, distinct photos at
    # most 0.67) and the similarity stands out: this many robust deviations above the median
    # similarity of a picture to its nearest other one (pictures of one plain kind, all alike
    # to a network, are not all copies).
    near_duplicate: float = 0.75
    duplicate_spread: float = 3.0
    # ... or when both are fairly close: hashes within this many bits and embeddings at least
    # this alike (a cropped copy moves the hash 12-20 bits and keeps embeddings 0.74-0.86
    # alike; hymenoptera's distinct photos within 18 bits are at most 0.54 alike).
    crop_distance: int = 16
    crop_similarity: float = 0.6
    # Off-topic: an outlier score this many robust standard deviations (1.4826 x the median
    # absolute deviation) above the median of the dataset's own scores.
    off_topic_spread: float = 3.5
    # --auto applies only findings at least this sure (Issue.score, 0 to 1): a picture 1.35
    # robust deviations or more past the off-topic threshold, a copy this alike...
    auto_score: float = 0.9
    # ... and relabels a picture whose suggested class has at least this out-of-fold
    # probability. bench/clean_labels.py, validation accuracy of a probe trained after --auto,
    # mean of 12 seeds: 0.8 0.966, 0.9 0.958, 0.95 0.960 (undamaged 0.967, damaged 0.962).
    auto_label_score: float = 0.8

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The detector's outlier scores (unknown.Detector): by the predicted class, or by any class
OUTLIER_SCORES = ("class_knn+softmax", "knn")


@dataclass(frozen=True)
class UnknownConfig:
    """How a model's detector was fitted and calibrated (the model file's JSON part)."""

    # the outlier score: k-th nearest training picture of the predicted class + softmax term
    # (OUTLIER_SCORES); "knn" for multi-label models: the k-th nearest training picture, any labels
    score: str = "class_knn+softmax"
    k: int = KNN_K
    softmax_weight: float = SOFTMAX_WEIGHT
    # share of in-domain pictures accepted at the threshold below
    acceptance: float = DEFAULT_ACCEPTANCE
    # pictures with an outlier score above this are "unknown"
    threshold: float = float("inf")
    # where the in-domain scores behind the threshold came from: "valid", "train (left out)"
    # or both
    calibrated_on: str = "valid"
    # training pictures in the detector's bank
    bank_size: int = 0
    # pictures of none of the classes it was tuned on (an _unknown folder), and the share of
    # them it calls unknown
    negatives: int = 0
    negatives_flagged: float | None = None

    def __post_init__(self):
        if not _number(self.acceptance) or not 0 < self.acceptance <= 1:
            raise ValueError(f"acceptance must be in (0, 1], not {self.acceptance!r}")
        if not _integer(self.k) or not 1 <= self.k <= MAX_NEIGHBOURS:
            raise ValueError(f"k must be a whole number from 1 to {MAX_NEIGHBOURS}, not "
                             f"{self.k!r}")
        if not _number(self.softmax_weight) or self.softmax_weight < 0:
            raise ValueError(f"softmax_weight must be 0 or more, not {self.softmax_weight!r}")
        if self.score not in OUTLIER_SCORES:
            raise ValueError(f"score must be one of {OUTLIER_SCORES}, not {self.score!r}")
        # inf is a threshold (nothing is unknown); NaN or a string is not
        if (not isinstance(self.threshold, (int, float)) or isinstance(self.threshold, bool)
                or math.isnan(self.threshold)):
            raise ValueError(f"threshold must be a number, not {self.threshold!r}")
        if not _integer(self.bank_size) or self.bank_size < 0:
            raise ValueError(f"bank_size must be 0 or more, not {self.bank_size!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class InferenceConfig:
    """How a trained network runs over pictures outside training: evaluate, predict, serve,
    the probe's embeddings, export checks and Ray. Every forward pass's defaults live here.

    Example:
        >>> Predictor.load("ants.imgclf", runtime="torch", acceptance=0.99)
    """

    # Pictures per forward pass. No gradients are kept, so batches larger than training's are
    # faster; a CPU gains little past 32 (bench/throughput.py).
    batch_size: int = 32
    # What runs the network: "auto" is onnxruntime where it is installed and the network is on
    # the CPU (2.5x PyTorch eager on a 2-core CPU, bench/throughput.py), else PyTorch; "onnx";
    # "torch".
    runtime: str = "auto"
    # DataLoader worker processes that read pictures; None: none on 2 cores or fewer, where
    # the network's threads already use every core (data.datasets.inference_workers).
    num_workers: int | None = None
    # Share of in-domain pictures the "unknown" detector accepts; None: the share the model was
    # calibrated at when it was trained (TrainConfig.acceptance).
    acceptance: float | None = None

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, not {self.runtime!r}")
        if self.acceptance is not None and not 0 < self.acceptance <= 1:
            raise ValueError(f"acceptance must be in (0, 1], not {self.acceptance}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ServeConfig:
    """Where the web page and the JSON API listen (``imgclf serve``, ``clean --review``)."""

    # 127.0.0.1: this computer alone; 0.0.0.0 opens the server to the network.
    host: str = "127.0.0.1"
    # Gradio's own default port, so a Gradio user finds the page where they expect it.
    port: int = 7860
    # The review page of ``imgclf clean --review`` (always on 127.0.0.1: it moves files).
    review_port: int = 7861

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
