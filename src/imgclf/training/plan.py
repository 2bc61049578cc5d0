"""A training run as a plan of phases: the probe, head-only epochs, whole-network epochs.

``plan_for(mode, config, data)`` says what ``train`` will do before anything runs; the
Learner runs any plan top to bottom, with the same settings file, callbacks, checkpoints and
model file whatever its phases. Each number below was measured; the comment says where.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imgclf.config import TrainConfig, probe_image_size

if TYPE_CHECKING:
    from imgclf.data.imagedata import ImageData

# Learning rates of the layer groups, early to late, as fractions of the head's (fastai's
# slice(lr/100, lr)).
DISCRIMINATIVE = (0.01, 0.1, 1.0)
# Embeddings per training picture in probe mode: (below PROBE_FEW pictures per class, else).
# Hymenoptera, validated on resized copies, mean of 3 seeds: 10 per class 0.922 with 1 view,
# 0.933 with 4; 5 per class 0.915 / 0.913; all 245 pictures 0.954 with 1 view, 0.941 with
# 2 or 4 (and 2-3x the time).
PROBE_VIEWS = (4, 1)
PROBE_FEW = 20
# auto mode fits the probe alone when some class has fewer training pictures than this
# (bench/vs_fastai.py learning curve).
AUTO_PROBE_BELOW = 20
# auto mode fine-tunes at this fraction of learning_rate, starting from the probed head.
# Blood-cells (bench/README.md, 2026-12-03): the probe 0.278 validation loss (accuracy
# 0.906); a 1-epoch schedule at 1e-3, then a 3-epoch one, ended at 0.218 (0.925); the older
# code's 4 epochs at 2e-4 reached 0.917 accuracy; 4 epochs at 1e-3 0.173 (0.950).
# Hymenoptera keeps its probe either way.
AUTO_RATE_FACTOR = 1.0
# auto mode's whole-network epochs come in cycles of at most this many, each a complete
# one-cycle schedule (a warm restart from the last one's weights), judged at its end: with
# the default 6 epochs (AUTO_EPOCHS), one schedule. Short schedules were poor judges on
# blood-cells (bench/README.md): validation loss after a 1-epoch schedule 0.37 (peak 2e-4) and
# 0.39 (1e-3), after a 2-epoch one 0.31, against the probe's 0.28; after 4 epochs, 0.17.
AUTO_CYCLE_EPOCHS = 4
# Whole-network epochs when TrainConfig.epochs is None: fine_tune's are fastai's
# fine_tune(4); auto's one schedule is planned longer and shortened by the time limit to what
# fits. Blood-cells within the 10-minute limit, seeds 42, 43, 44 (bench/README.md): 6 epochs
# ended at validation accuracy 0.938, 0.967, 0.950 where 4 had ended at 0.950, 0.933, 0.935
# (mean 0.951 against 0.940); the probe 0.906. Seed 43 chose the number (no limit, the same
# end); seed 42, worse by 1.25 points, reused every second epoch's pictures to fit. Half
# the epochs reusing stored pictures, the last reading (TrainConfig.reuse_views, the default
# since): 0.950, 0.944, 0.938 in 480-506 s; with onnxruntime running the frozen layers (the
# default since), 0.940, 0.948, 0.942 in 468-471 s.
FINE_TUNE_EPOCHS = 4
AUTO_EPOCHS = 6

# auto mode's time limit on the CPU when none is given: the main job (hymenoptera) takes
# about 2 minutes, and a 10-class set of 3,400 pictures, whose whole-network epochs take
# about 8 minutes each on 2 cores, gets its probe and stops instead of running 40 minutes.
DEFAULT_TIME_LIMIT = 600.0
# A batch of validation (at the test size, with its checkpoint) as a share of a training
# step, before a validation pass has been timed: blood-cells with freeze_early, 480
# pictures validated at 288 px in 18 s, a training step of 16 at 224 px 0.56 s.
FORWARD_SHARE = 1.0
# A validation pass from the frozen stages' stored output (training/frozen.py) as a share of
# one through the whole network, before one was timed: efficientnet_lite0 at 288 px, batch
# 32, its first 10 of 20 stages frozen (freeze_early), 2-core EPYC: 0.18.
STORED_SHARE = 0.25
# Progressive resizing (TrainConfig.progressive_resizing): the smaller crops' side as a
# fraction of the training size, rounded to a multiple of 16 (224 -> 176). Training pictures
# a second through the real loader, efficientnet_lite0 with its early layers frozen, 2-core
# CPU (bench/accuracy.py --steps): 176 px 1.1x (hymenoptera) and 1.4x (blood-cells) 224 px.
PROGRESSIVE_FACTOR = 0.8
# Training steps timed at the start of a whole-network phase before its epochs are fitted to
# the time left: the first step also pays for warming up, so the second and third are timed.
TIMED_STEPS = (1, 3)


@dataclass(frozen=True)
class Phase:
    """One stretch of a run.

    kind "one_cycle": ``epochs`` of one-cycle training at these per-group peak rates, the
    backbone frozen or not. kind "probe": the head's linear layer fitted on cached embeddings
    (``views`` per training picture; None: chosen from the class sizes), counted as 1 epoch.
    """

    name: str
    epochs: int
    learning_rates: tuple[float, ...] = ()
    frozen: bool = True
    kind: str = "one_cycle"
    views: int | None = None
    # auto mode: only the phase's last epoch, where its schedule has annealed, may become the
    # run's best, and only there is the run judged (steps.not_helping)
    compare_at_end: bool = False
    # reuse_views=None: whether the time limit had half the epochs reuse stored pictures
    # (frozen.TrainingViews), kept so that a resumed run goes on the same way
    reuse_views: bool | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Phase:
        return cls(**{**values, "learning_rates": tuple(values.get("learning_rates", ()))})


def probe_phase(views: int | None = None) -> Phase:
    return Phase("probe", 1, kind="probe", views=views)


def fine_tune_phases(config: TrainConfig, *, epochs: int | None = None,
                     freeze_epochs: int | None = None, learning_rate: float | None = None,
                     head_learning_rate: float | None = None) -> list[Phase]:
    """Head-only epochs, then the whole network with discriminative learning rates."""
    epochs = whole_epochs(config, "fine_tune") if epochs is None else epochs
    freeze_epochs = config.freeze_epochs if freeze_epochs is None else freeze_epochs
    rate = learning_rate or config.learning_rate
    head_rate = head_learning_rate or config.head_learning_rate
    plan = []
    if freeze_epochs:
        plan.append(Phase("head", freeze_epochs, (head_rate,), frozen=True))
    if epochs:
        plan.append(Phase("all", epochs, tuple(rate * f for f in DISCRIMINATIVE), frozen=False))
    return plan


def whole_epochs(config: TrainConfig, mode: str | None = None) -> int:
    """The whole-network epochs config asks for: its own, or the default of `mode`
    (config.mode unless given)."""
    if config.epochs is not None:
        return config.epochs
    return AUTO_EPOCHS if (mode or config.mode) == "auto" else FINE_TUNE_EPOCHS


def plan_for(config: TrainConfig, data: ImageData) -> list[Phase]:
    """The phases config.mode runs on this data.

    fine_tune: head epochs, then the whole network. probe: the probe alone. auto: the probe
    alone when some class has fewer than AUTO_PROBE_BELOW training pictures; otherwise the
    probe, then the whole network from the probed head at AUTO_RATE_FACTOR of the learning
    rate (no head-only epochs needed), its `epochs` in cycles of AUTO_CYCLE_EPOCHS (the rest
    joins the last), each a complete one-cycle schedule from the last one's weights. Only points where a schedule has
    annealed are compared (the probe, each cycle's end): the run stops at the first cycle
    that ends no better than the best point so far, and keeps the best (steps.not_helping).
    """
    if config.mode == "fine_tune":
        return fine_tune_phases(config)
    if config.mode == "probe" or probe_is_enough(data):
        return [probe_phase()]
    rates = tuple(config.learning_rate * AUTO_RATE_FACTOR * f for f in DISCRIMINATIVE)
    # cycles of AUTO_CYCLE_EPOCHS; what is left over joins the last (a short cycle judges badly)
    epochs = whole_epochs(config)
    cycles = [AUTO_CYCLE_EPOCHS] * max(1, epochs // AUTO_CYCLE_EPOCHS)
    cycles[-1] += epochs - sum(cycles)
    return [probe_phase(), *(Phase(f"all {number}", epochs, rates, frozen=False,
                                   compare_at_end=True)
                             for number, epochs in enumerate(cycles, 1))]


def data_for(config: TrainConfig, data: ImageData) -> ImageData:
    """The data at the input sizes config.mode reads pictures at.

    probe and auto test at PROBE_SIZE_FACTOR of the pretrained size unless the user chose
    an image_size; fine-tuning in auto still trains on pretrained-size crops, which is 1.65x
    faster per epoch than 288 and the FixRes recipe.
    """
    if config.mode in ("probe", "auto") and not data.fixed_size:
        return data.with_image_size(probe_image_size(data.input.image_size),
                                    train_size=data.input.image_size)
    return data


def probe_is_enough(data: ImageData) -> bool:
    """auto mode: with this few training pictures per class, fine-tuning adds nothing."""
    counts = [row["train"] for row in data.counts().values()]
    return min(counts) < AUTO_PROBE_BELOW


def probe_views(data: ImageData) -> int:
    """Embeddings per training picture when a probe phase does not say (PROBE_VIEWS)."""
    fewest = min(row["train"] for row in data.counts().values())
    return PROBE_VIEWS[0] if fewest < PROBE_FEW else PROBE_VIEWS[1]


def small_epochs(phase: Phase, progressive: bool) -> int:
    """How many of a phase's first epochs train on smaller crops: all but the last of a
    whole-network phase under progressive resizing (the last, where its schedule anneals,
    trains at full size), else none."""
    return phase.epochs - 1 if progressive and not phase.frozen and phase.kind == "one_cycle" else 0


def small_size(train_size: int) -> int:
    """The side of progressive resizing's smaller crops (a multiple of 16, at least 32)."""
    return max(32, round(train_size * PROGRESSIVE_FACTOR / 16) * 16)


def train_sizes(data: ImageData, progressive: bool) -> dict[int, ImageData]:
    """The data at each side training crops are read at: the training size, and under
    progressive resizing also the smaller one (small_size)."""
    full = data.input.train_size or data.input.image_size
    sizes = {full: data}
    if progressive and small_size(full) < full:
        sizes[small_size(full)] = data.with_image_size(data.input.image_size,
                                                       train_size=small_size(full))
    return sizes


def full_step_seconds(step_seconds: float, *, timed_small: bool, area_ratio: float) -> float:
    """A full-size training step's cost from one timed on crops area_ratio (< 1) its area
    (timed_small), taken to scale with the pixels. Progressive resizing's epochs are all
    priced at full size: the time limit is then never passed, whichever epochs it keeps."""
    return step_seconds / area_ratio if timed_small else step_seconds


def time_limit(config: TrainConfig, device_type: str) -> float | None:
    """The run's limit in seconds (TrainConfig.time_limit resolved), or None for none."""
    if config.time_limit is not None:
        return config.time_limit or None
    return DEFAULT_TIME_LIMIT if config.mode == "auto" and device_type == "cpu" else None


def fit_epochs(planned: int, *, limit: float, spent: float, epoch_seconds: float,
               into_epoch: float) -> int:
    """How many of a phase's `planned` epochs fit in the limit, its first epoch begun.

    spent: seconds since the run began; epoch_seconds: the estimated cost of one epoch (its
    training steps and its validation); into_epoch: seconds of the first epoch already run.
    """
    first_ends = spent + max(0.0, epoch_seconds - into_epoch)
    if first_ends > limit:
        return 0
    return min(planned, 1 + int((limit - first_ends) // max(epoch_seconds, 1e-9)))


def epoch_costs(phase: Phase, *, step_seconds: float, steps_per_epoch: int,
                validate_seconds: float | None, pictures: dict[str, int], batch_size: int,
                full_validate_seconds: float | None = None, stored: bool = False
                ) -> tuple[float, float]:
    """(seconds an epoch of the phase takes, its training steps and validation; seconds to
    keep for the run's end) from the seconds a training step takes.

    Validation takes as long as the last PyTorch pass (validate_seconds), or FORWARD_SHARE of
    a step per batch before there was one (the probe validates on cached embeddings). Once
    the backbone has changed, the run ends with the detector's pass over every training
    picture, at the pace of a validation pass that read every picture through the whole
    network (full_validate_seconds). stored: validation passes start from the frozen stages'
    stored output (frozen.py) once the first has stored it; before that first pass was timed,
    the others are priced at STORED_SHARE of it and its extra cost is kept aside with the end.
    """
    valid = max(1, pictures.get("valid", 0))
    estimate = step_seconds * FORWARD_SHARE * pictures.get("valid", 0) / batch_size
    validating = validate_seconds if validate_seconds is not None else estimate
    full = next(seconds for seconds in (full_validate_seconds, validate_seconds, estimate)
                if seconds is not None)
    finishing = 0.0 if phase.frozen else full * pictures.get("train", 0) / valid
    if stored and validate_seconds is None:
        validating = estimate * STORED_SHARE
        finishing += estimate - validating
    return step_seconds * steps_per_epoch + validating, finishing


def fit_to_time(phase: Phase, *, limit: float, spent: float, epoch_seconds: float,
                into_epoch: float, kept: str | None, finishing: float = 0.0,
                most: int | None = None) -> tuple[int, str]:
    """(epochs of the phase to run, the line that says so) under a time limit.

    kept: the phase of the last epoch run, kept when none fits; None: nothing to keep yet,
    so one epoch runs even over the limit. finishing: seconds kept for the run's end (the
    "unknown" detector's pass over the training pictures once the backbone has changed).
    most: fit at most this many of the phase's epochs (the price holds for that many).
    """
    epochs = fit_epochs(min(phase.epochs, most or phase.epochs), limit=limit - finishing,
                        spent=spent, epoch_seconds=epoch_seconds, into_epoch=into_epoch)
    kind = "head-only" if phase.frozen else "whole-network"
    heading = (f"Time limit {describe_seconds(limit)}: {describe_seconds(spent)} spent"
               + (f", {describe_seconds(finishing)} kept for the end" if finishing >= 1 else "")
               + f"; a {kind} epoch takes about {describe_seconds(epoch_seconds)} here")
    if epochs or kept is None:
        return max(epochs, 1), f"{heading}: running {max(epochs, 1)} of {phase.epochs}."
    needed = spent - into_epoch + phase.epochs * epoch_seconds + finishing
    return 0, (f"{heading}, which does not fit; keeping the {kept} epoch. --time-limit "
               f"{math.ceil(needed * 1.1 / 60)}m would run all {phase.epochs}.")


def reuses(epoch: int, epochs: int) -> bool:
    """Does epoch `epoch` (from 0) of a schedule of `epochs` reuse the pictures of the reading
    epoch before it? epochs // 2 of them do, as many as every second epoch, but from 3 epochs
    on the last never does: the schedule's annealed end, which auto judges and keeps, reads
    pictures, and in a schedule of an even length the first epoch's pictures serve twice
    instead (6: read, reuse, reuse, read, reuse, read). A 2-epoch schedule has no other way
    to reuse: read, reuse. Blood-cells, 6 epochs reusing where this says (bench/README.md):
    seed 42 ended at validation accuracy 0.9500, seed 43 at 0.9437, where alternating (the
    last epoch reusing) had ended at 0.9375 and 0.9313."""
    if not 0 < epoch < epochs:
        return False
    if epochs % 2 == 0 and epoch >= 2:  # even: from the third on, shifted so the last reads
        return epoch % 2 == 0
    return epoch % 2 == 1


def reused_epochs(epochs: int) -> int:
    """How many epochs of a schedule of `epochs` reuse stored pictures (reuses)."""
    return sum(reuses(epoch, epochs) for epoch in range(epochs))


def fit_phase(phase: Phase, *, limit: float, spent: float, into_epoch: float,
              step_seconds: float, steps_per_epoch: int, kept: str | None,
              front_seconds: float | None, reuse: bool | None, **costs: Any
              ) -> tuple[int, str, bool | None]:
    """(epochs of the phase to run, the line that says so, whether half of them reuse
    stored pictures, plan.reuses) under a time limit: fit_to_time on epoch_costs (costs: its
    other arguments).

    front_seconds: what a step of an epoch that reads pictures spends reading them and in the
    frozen stages, which an epoch that reuses them saves (frozen.TrainingViews), or None
    without reuse. reuse: True or False as decided; None: reuse only if more epochs fit so.
    """
    def epochs_that_fit(reusing: bool, count: int = phase.epochs) -> tuple[int, str]:
        # of `count` epochs, those `reuses` names reuse pictures
        saved = (min(front_seconds, 0.9 * step_seconds) * reused_epochs(count) / count
                 if reusing else 0.0)
        epoch_seconds, finishing = epoch_costs(phase, step_seconds=step_seconds - saved,
                                               steps_per_epoch=steps_per_epoch, **costs)
        # priced for `count` epochs, so no more than `count` may be fitted at that price
        fitted = fit_to_time(phase, limit=limit, spent=spent, into_epoch=into_epoch,
                             epoch_seconds=epoch_seconds, finishing=finishing, kept=kept,
                             most=count)
        if reusing and 0 < fitted[0] < count:  # fewer epochs: a smaller share reuses
            return epochs_that_fit(True, fitted[0])
        return fitted

    if front_seconds is None:
        return (*epochs_that_fit(False), False)
    epochs, message = epochs_that_fit(bool(reuse))
    if reuse is None:  # reuse_views=None: only when it fits more epochs
        reusing = epochs_that_fit(True) if epochs < phase.epochs else (0, "")
        reuse = reusing[0] > epochs
        if reuse:
            epochs, message = reusing[0], (f"{reusing[1]} Half of them reuse stored pictures "
                                           f"to fit.")
    return epochs, message, reuse


def describe_seconds(seconds: float) -> str:
    """For people: "45 s", "3 min 20 s", "1 h 5 min"."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min" + (f" {seconds % 60} s" if seconds % 60 else "")
    return f"{seconds // 3600} h" + (f" {seconds % 3600 // 60} min" if seconds % 3600 >= 60
                                     else "")


def one_cycle(step: int, total: int, peak: float, warmup_fraction: float = 0.25
              ) -> tuple[float, float]:
    """(learning rate, Adam beta1) at a step: cosine up from peak/25, then down to peak/1e5.

    Momentum moves the opposite way (0.95 -> 0.85 -> 0.95), as in fastai's fit_one_cycle.
    """
    warmup = max(1, round(total * warmup_fraction))
    if step < warmup:
        progress, start, end, beta_start, beta_end = step / warmup, peak / 25, peak, 0.95, 0.85
    else:
        progress = (step - warmup) / max(1, total - warmup)
        start, end, beta_start, beta_end = peak, peak / 1e5, 0.85, 0.95
    blend = (1 - math.cos(math.pi * min(1.0, progress))) / 2
    return start + (end - start) * blend, beta_start + (beta_end - beta_start) * blend
