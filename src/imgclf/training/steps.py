"""One training step, one epoch of a one-cycle schedule, and when to stop: plain functions.

The Learner (learner.py) runs a plan's phases and decides what happens between epochs; what
happens inside one is here, taking everything it uses as arguments: ``train_epoch`` sets each
group's rate and momentum on the one-cycle schedule, runs the steps it is given (the
Learner's ``train_step``, which lr_find takes too) and, under a time limit, reports how long a
step takes once TIMED_STEPS have run.
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from rich.progress import (BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from imgclf._progress import bar as progress_bar
from imgclf.config import TrainConfig
from imgclf.inference.graphs import require
from imgclf.training.distributed import Processes, all_agree
from imgclf.training.plan import TIMED_STEPS, one_cycle


def train_epoch(step: Callable[..., float], network: torch.nn.Module, loader,
                optimizer: torch.optim.Optimizer, *, first_step: int, total_steps: int,
                warmup_fraction: float, processes: Processes, description: str,
                show_progress: bool, fit: Callable[..., int] | None = None
                ) -> tuple[float, float] | None:
    """One epoch of the schedule: (its mean loss, training pictures a second).

    step(images, targets, optimizer, trainable) takes one optimizer step. fit: called with the
    seconds a step takes once TIMED_STEPS have run; it returns the steps the schedule keeps,
    and None is returned here when that is 0 (not one epoch fits the time left).
    """
    began = time.perf_counter()
    timed_from, pictures = None, 0
    network.train()
    trainable = [p for group in optimizer.param_groups for p in group["params"]]
    losses = []
    columns = (TextColumn(description), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with progress_bar(*columns, transient=True, enabled=show_progress) as bar:
        task = bar.add_task(description, total=len(loader), loss=float("nan"))
        for position, (images, targets, _indices, _errors) in enumerate(loader, first_step):
            for group in optimizer.param_groups:
                group["lr"], beta1 = one_cycle(position, total_steps, group["peak"],
                                               warmup_fraction)
                group["betas"] = (beta1, group["betas"][1])
            # a step all processes take, or none: a slice of unreadable pictures skips it
            if not all_agree(processes, images is not None):
                continue
            losses.append(step(images, targets, optimizer, trainable))
            pictures += len(targets)
            bar.update(task, advance=1, loss=sum(losses) / len(losses))
            if fit is not None and len(losses) == TIMED_STEPS[0]:
                timed_from = time.perf_counter()
            elif fit is not None and len(losses) == TIMED_STEPS[1]:
                per_step = (time.perf_counter() - timed_from) / (TIMED_STEPS[1] - TIMED_STEPS[0])
                total_steps, fit = fit(per_step, time.perf_counter() - began), None
                if not total_steps:
                    return None
    if fit is not None and losses:  # an epoch shorter than TIMED_STEPS: timed whole
        fit((time.perf_counter() - began) / len(losses), time.perf_counter() - began,
            finished=True)
    return (sum(losses) / max(1, len(losses)),
            pictures * processes.count / max(time.perf_counter() - began, 1e-9))


def optimizer_for(network, phase, weight_decay: float, state: dict | None = None
                  ) -> torch.optim.Optimizer:
    """AdamW over what a one-cycle phase trains: the head alone (frozen), or the network's
    layer groups, each peaking at its rate of the phase; state: a checkpoint's, to resume."""
    groups = ([list(network.head.parameters())] if phase.frozen
              else network.layer_groups(len(phase.learning_rates)))
    optimizer = torch.optim.AdamW(
        [{"params": g, "lr": r, "peak": r} for g, r in zip(groups, phase.learning_rates)],
        weight_decay=weight_decay)
    if state is not None:
        optimizer.load_state_dict(state)
    return optimizer


def train_step(network, images, targets, optimizer, trainable, *, device: torch.device,
               config: TrainConfig, parallel: tuple[bool, torch.nn.Module] | None,
               start: int = 0, front: Callable[[torch.Tensor, int], torch.Tensor] | None = None
               ) -> float:
    """One optimizer step on a batch of a Classifier; its loss. parallel: (frozen, module) of
    DistributedDataParallel's wrapper while a phase runs in several processes. start: images
    are what the network's first `start` stages made of the pictures (frozen.TrainingViews).
    front: runs the network's frozen first stages (frozen.FrozenFront, onnxruntime) on
    pictures, when a step of one process trains the rest of it."""
    images = images.to(device, memory_format=torch.channels_last, non_blocking=True)
    targets = targets.to(device, non_blocking=True)
    frozen, wrapper = parallel or (None, None)
    if frozen != network.frozen:  # lr_find, or a phase of one process
        wrapper = None
    if front is not None and not start and wrapper is None and not network.frozen:
        first = network.frozen_start()
        if first:
            images, start = front(images, first), first
    # config.precision is resolved (resolved()): "float32" or "bfloat16"
    with torch.autocast(device.type, dtype=torch.bfloat16,
                        enabled=config.precision == "bfloat16"):
        if network.frozen:
            with torch.no_grad():  # no graph through a frozen backbone: 2-3x faster
                features = network.features(images)
            logits = (wrapper or network.head)(features)
        elif start:
            logits = network.head(network.features(images, start=start))
        else:
            logits = (wrapper or network)(images)
    loss = loss_of(logits, targets, config.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.clip_gradient:
        torch.nn.utils.clip_grad_norm_(trainable, config.clip_gradient)
    optimizer.step()
    return float(loss.detach())


def loss_of(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0
            ) -> torch.Tensor:
    """Cross-entropy on class indices; on multi-label 0/1 rows (float), the binary
    cross-entropy of each label (fastai's BCEWithLogitsLossFlat), smoothed toward 0.5."""
    if targets.is_floating_point():
        if label_smoothing:
            targets = targets * (1 - label_smoothing) + label_smoothing / 2
        return F.binary_cross_entropy_with_logits(logits.float(), targets.float())
    return F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)


def seed_epoch(seed: int, epoch: int, loader) -> None:
    """Same seed, same batches and augmentation per epoch, also after a resume and with any
    number of DataLoader workers."""
    seed = seed * 1000 + epoch
    torch.manual_seed(seed)
    if loader.generator is not None:
        loader.generator.manual_seed(seed)
    loader.dataset.seed = seed


# auto mode keeps the probe without running its whole-network schedule when the probe leaves
# little to gain: at least PROBE_ENOUGH_ACCURACY of the validation pictures right and fewer
# than PROBE_ENOUGH_ERRORS wrong. A cost and benefit rule: the schedule costs 5-10x the
# probe's time (blood-cells 539-598 s against 57 s; hymenoptera's 4-epoch one 60 s against
# 13 s) and can only put right what the probe gets wrong; in bench/accuracy.py it put right
# a third to two-thirds of that (blood-cells: 45 wrong of 480 to 16-30). Under 10 wrong, that
# is a few pictures, as many as the probe's own figure moves from seed to seed (hymenoptera:
# 4 to 5 of 153), and hymenoptera's schedules never beat its probe. The accuracy floor keeps
# small validation sets, where a few pictures are many percent, fine-tuning. patience=0
# turns the rule off.
PROBE_ENOUGH_ACCURACY = 0.95
PROBE_ENOUGH_ERRORS = 10


def probe_is_right(config: TrainConfig, row: dict[str, Any], pictures: int) -> str | None:
    """auto mode, after the probe: why to keep it without the whole-network schedule (the
    line the run prints), or None to go on. Single-label runs with patience only."""
    if not config.patience or not pictures or not math.isfinite(row["error_rate"]):
        return None
    wrong = round(row["error_rate"] * pictures)
    if wrong >= PROBE_ENOUGH_ERRORS or row["accuracy"] < PROBE_ENOUGH_ACCURACY:
        return None
    left = f"only {wrong} to put right" if wrong else "none to put right"
    return (f"Keeping the probe: it gets {pictures - wrong} of {pictures} validation pictures "
            f"right ({row['accuracy']:.4f}), leaving {left}, too few to pay for training "
            "the whole network, so that is not run (patience=0 or --patience 0 runs it).")


def not_helping(config: TrainConfig, history: list[dict[str, Any]],
                best: dict[str, Any] | None) -> str | None:
    """auto mode (phases with compare_at_end): why to stop when the last `patience` complete
    schedules (rows whose schedule had annealed) all ended no better than the best point so
    far; None to go on.

    An epoch in the middle of a one-cycle schedule ends at a high learning rate and says
    little of where the schedule will end, so it is never judged (see TrainConfig.patience).
    """
    patience, monitor = config.patience, config.monitor
    if not patience or best is None or not history:
        return None
    if not history[-1].get("annealed", True):
        return None
    ends = [row for row in history if row.get("annealed", True)]
    if len(ends) <= patience or best["epoch"] >= ends[-patience]["epoch"]:
        return None
    last = history[-1]
    return (f"Stopping: the whole network after a complete schedule ({last['phase']}, epoch "
            f"{last['epoch']}) validated at {monitor} {last[monitor]:.4f}, no better than the "
            f"{best['phase']} epoch's {best[monitor]:.4f}; keeping the {best['phase']} epoch.")


def kept(config: TrainConfig, history: list[dict[str, Any]], best: dict[str, Any] | None
         ) -> str | None:
    """auto mode: the one line that says which point it kept and against what."""
    if best is None:
        return None
    ends = [row for row in history if row.get("annealed", True)]
    others = ", ".join(f"{row['phase']} {row[config.monitor]:.4f}" for row in ends
                       if row["epoch"] != best["epoch"])
    return (f"Kept the {best['phase']} epoch ({best['epoch']}): {config.monitor} "
            f"{best[config.monitor]:.4f}, accuracy {best['accuracy']:.4f}"
            + (f"; the other points where a schedule had annealed: {others}." if others
               else "; no other schedule ended."))


# auto precision on a CPU with bfloat16 instructions: whether bfloat16 autocast is used.
# `python bench/accuracy.py --steps 40` on this project's EPYC (AVX-512 BF16), hymenoptera,
# training pictures a second at 224 px through the data loader, float32 / bfloat16: the whole
# network 13.7 / 13.2, its early layers frozen (freeze_early) 22.8 / 16.3. Random pictures,
# no loader: 21.0 / 24.8 and 40.9 / 41.6. Nowhere enough to pay for 8 bits of mantissa.
BF16_ON_CPU = False


def cpu_has_bf16() -> bool:
    """Whether this CPU does bfloat16 arithmetic in its instructions (AVX-512 BF16 or AMX
    tiles), asked of PyTorch's CPU checks; False wherever they cannot say."""
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, name, None)
        try:
            if check is not None and check():
                return True
        except (RuntimeError, OSError):
            continue
    return False


def device_has_bf16(device: torch.device) -> bool:
    """Whether bfloat16 arithmetic runs in hardware on this device."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        try:  # emulated bfloat16 (before Ampere) is not bfloat16 arithmetic
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # a torch without the argument never counted emulation
            return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_bf16()
    return False


def resolved(config: TrainConfig, device: torch.device, *, has_bf16: bool | None = None
             ) -> tuple[TrainConfig, str | None]:
    """(config with precision and freeze_early decided for this device, a note for people
    when a choice was overruled). has_bf16: the device's answer (device_has_bf16) when known."""
    has_bf16 = device_has_bf16(device) if has_bf16 is None else has_bf16
    precision, note = config.precision, None
    if precision == "auto":
        precision = ("bfloat16" if has_bf16 and (device.type != "cpu" or BF16_ON_CPU)
                     else "float32")
    elif precision == "bfloat16" and not has_bf16:
        precision = "float32"
        note = (f"precision='bfloat16' asked for, but this {device.type.upper()} has no "
                f"bfloat16 arithmetic (it would be emulated, many times slower): training in "
                f"float32.")
    freeze_early = config.freeze_early
    if freeze_early is None:  # auto mode on a CPU; fine_tune keeps fastai's recipe
        freeze_early = device.type == "cpu" and config.mode == "auto"
    reuse_views = config.reuse_views if freeze_early else False  # None: when the limit needs it
    frozen_runtime, runtime_note = frozen_runtime_for(config.frozen_runtime, device,
                                                      freeze_early=freeze_early)
    note = " ".join(part for part in (note, runtime_note) if part) or None
    return replace(config, precision=precision, freeze_early=freeze_early,
                   reuse_views=reuse_views, frozen_runtime=frozen_runtime), note


def frozen_runtime_for(asked: str, device: torch.device, *, freeze_early: bool
                       ) -> tuple[str, str | None]:
    """(what runs the frozen early layers, "onnx" or "torch"; a note when the choice asked
    for cannot be had). onnxruntime runs on the CPU only; "onnx" without it installed is an
    ImgclfError saying how to install it."""
    if asked == "torch" or not freeze_early:
        return "torch", (f"frozen_runtime='{asked}' runs freeze_early's frozen layers, and no "
                         f"layer is kept frozen here: nothing for it to run."
                         if asked == "onnx" else None)
    if device.type != "cpu":
        return "torch", (None if asked == "auto" else
                         f"frozen_runtime='onnx' runs on the CPU: on {device.type.upper()} "
                         f"PyTorch runs the frozen layers.")
    if asked == "onnx":
        require("onnxruntime")
        return "onnx", None
    return ("onnx" if importlib.util.find_spec("onnxruntime") is not None else "torch"), None
