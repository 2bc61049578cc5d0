"""One training step, one epoch of a one-cycle schedule, and when to stop: plain functions.

The Learner (learner.py) runs a plan's phases and decides what happens between epochs; what
happens inside one is here, taking everything it uses as arguments: ``train_epoch`` sets each
group's rate and momentum on the one-cycle schedule, runs the steps it is given (the
Learner's ``train_step``, which lr_find takes too) and, under a time limit, reports how long a
step takes once TIMED_STEPS have run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from rich.progress import (BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from imgclf._progress import bar as progress_bar
from imgclf.config import TrainConfig
from imgclf.training.distributed import Processes, all_agree
from imgclf.training.plan import TIMED_STEPS, one_cycle


def train_epoch(step: Callable[..., float], network: torch.nn.Module, loader,
                optimizer: torch.optim.Optimizer, *, first_step: int, total_steps: int,
                warmup_fraction: float, processes: Processes, description: str,
                show_progress: bool, fit: Callable[..., int] | None = None) -> float | None:
    """One epoch of the schedule; its mean loss.

    step(images, targets, optimizer, trainable) takes one optimizer step. fit: called with the
    seconds a step takes once TIMED_STEPS have run; it returns the steps the schedule keeps,
    and None is returned here when that is 0 (not one epoch fits the time left).
    """
    began = time.perf_counter()
    timed_from = None
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
    return sum(losses) / max(1, len(losses))


def train_step(network, images, targets, optimizer, trainable, *, device: torch.device,
               config: TrainConfig, parallel: tuple[bool, torch.nn.Module] | None) -> float:
    """One optimizer step on a batch of a Classifier; its loss. parallel: (frozen, module) of
    DistributedDataParallel's wrapper while a phase runs in several processes."""
    images = images.to(device, memory_format=torch.channels_last, non_blocking=True)
    targets = targets.to(device, non_blocking=True)
    # bf16 on this project's CPUs (no AVX-512 BF16) is 6-11x slower: autocast on GPUs only
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        frozen, wrapper = parallel or (None, None)
        if frozen != network.frozen:  # lr_find, or a phase of one process
            wrapper = None
        if network.frozen:
            with torch.no_grad():  # no graph through a frozen backbone: 2-3x faster
                features = network.features(images)
            logits = (wrapper or network.head)(features)
        else:
            logits = (wrapper or network)(images)
    loss = F.cross_entropy(logits.float(), targets, label_smoothing=config.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.clip_gradient:
        torch.nn.utils.clip_grad_norm_(trainable, config.clip_gradient)
    optimizer.step()
    return float(loss.detach())


def seed_epoch(seed: int, epoch: int, loader) -> None:
    """Same seed, same batches and augmentation per epoch, also after a resume and with any
    number of DataLoader workers."""
    seed = seed * 1000 + epoch
    torch.manual_seed(seed)
    if loader.generator is not None:
        loader.generator.manual_seed(seed)
    loader.dataset.seed = seed


def not_helping(config: TrainConfig, history: list[dict[str, Any]],
                best: dict[str, Any] | None) -> str | None:
    """auto mode: why to stop when the last `patience` epochs all failed to beat the best one
    (see TrainConfig.patience); None to go on."""
    patience, monitor = config.patience, config.monitor
    if config.mode != "auto" or not patience or len(history) <= patience or best is None:
        return None
    if best["epoch"] >= len(history) - patience:
        return None
    return (f"Stopping early: {patience} whole-network epoch(s) did not beat the "
            f"{best['phase']} epoch's {monitor} ({history[-1][monitor]:.4f} vs "
            f"{best[monitor]:.4f}); keeping it.")
