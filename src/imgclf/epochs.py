"""One-cycle epochs: the part of a run that trains the network batch by batch.

``Learner`` (training.py) runs a plan of phases; for each one-cycle phase it calls
``_run_one_cycle`` here, which sets up the optimizer, seeds each epoch, trains its batches on
the one-cycle schedule (``train_step``, which lr_find uses too) and, under a time limit, fits
the phase's epochs to the time left after timing its first batches (plan.fit_to_time). What
happens after an epoch (validating, keeping the best, checkpoints, callbacks) is the
Learner's, the same for every phase.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from imgclf._progress import bar as progress_bar
from imgclf._progress import console
from imgclf.devices import agree, all_agree, parallel_module
from imgclf.plan import TIMED_STEPS, Phase, fit_to_time, one_cycle, time_limit

if TYPE_CHECKING:
    from imgclf.config import TrainConfig
    from imgclf.data import ImageData
    from imgclf.devices import Processes
    from imgclf.model import Classifier


class OneCycleEpochs:
    """Training epochs, mixed into Learner (which provides network, data, config, device,
    history, verbose and the end-of-epoch steps)."""

    network: Classifier
    data: ImageData
    config: TrainConfig
    device: torch.device
    processes: Processes

    def _run_one_cycle(self, plan: list[Phase], index: int, first_epoch: int,
                       optimizer_state: dict | None) -> str | None:
        """One one-cycle phase; why it stopped before its last epoch, or None.

        Under a time limit, a phase begun afresh times its first batches, then keeps the
        epochs that fit (fewer, a shorter schedule: plan[index] changes) or none at all (the
        weights it began with restored).
        """
        phase = plan[index]
        self.network.freeze() if phase.frozen else self.network.unfreeze()
        self._backbone_trained = self._backbone_trained or not phase.frozen
        groups = ([list(self.network.head.parameters())] if phase.frozen
                  else self.network.layer_groups(len(phase.learning_rates)))
        optimizer = torch.optim.AdamW(
            [{"params": g, "lr": r, "peak": r} for g, r in zip(groups, phase.learning_rates)],
            weight_decay=self.config.weight_decay)
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        processes = self.processes
        # several processes: each takes its share of every batch; gradients are averaged
        loader = self.data.train_loader(
            part=(processes.rank, processes.count) if processes.parallel else None)
        self._parallel = (phase.frozen, parallel_module(
            processes, self.network.head if phase.frozen else self.network))
        limit = time_limit(self.config, self.device.type)
        fit = self._fitter(plan, index, len(loader), limit) if limit and not first_epoch else None
        epoch = first_epoch
        while epoch < plan[index].epochs:
            started = time.perf_counter()
            self.seed_epoch(len(self.history), loader)
            name = f"{phase.name} {epoch + 1}/{plan[index].epochs}"
            train_loss = self._train_epoch(loader, optimizer, epoch * len(loader),
                                           plan[index].epochs * len(loader), name,
                                           fit if epoch == first_epoch else None)
            if train_loss is None:  # not one epoch fits
                return self._out_of_time
            self._end_epoch({"phase": phase.name, "train_loss": train_loss}, started,
                            plan, index, epoch, optimizer)
            if epoch < plan[index].epochs - 1 and agree(processes, self._not_helping()):
                return self._not_helping_reason()
            epoch += 1
        return None

    def _fitter(self, plan: list[Phase], index: int, steps_per_epoch: int, limit: float):
        """The function _train_epoch calls with the seconds a training step takes: it fits
        plan[index]'s epochs to the time left and returns their steps (0: none fit)."""
        phase = plan[index]
        snapshot = {k: v.detach().clone() for k, v in self.network.state_dict().items()}
        valid_pictures = len(self.data.items["valid"])

        def fit(step_seconds: float, into_epoch: float, finished: bool = False) -> int:
            epochs, message = fit_to_time(
                phase, limit=limit, spent=time.perf_counter() - self._started,
                into_epoch=into_epoch, epoch_seconds=step_seconds * steps_per_epoch + (
                    # validation: as long as the last PyTorch pass, or forward passes a third
                    # of a step (the probe's validation ran on cached embeddings)
                    self._validate_seconds if self._validate_seconds is not None
                    else step_seconds / 3 * valid_pictures / self.data.config.batch_size),
                # an epoch already finished is kept whatever the time
                kept=self.history[-1]["phase"] if self.history and not finished else None)
            epochs = int(agree(self.processes, epochs))  # the first process's estimate
            if not epochs:
                self.network.load_state_dict(snapshot)
                self._out_of_time = message
                return 0
            if epochs < phase.epochs:
                plan[index] = replace(phase, epochs=epochs)
                self._save_settings(plan)
            if self.verbose:
                console().print(message, soft_wrap=True)
            return epochs * steps_per_epoch

        return fit

    def _train_epoch(self, loader, optimizer, first_step: int, total_steps: int,
                     description: str, fit=None) -> float | None:
        """One epoch of the schedule; its mean loss. fit: called with the seconds a step
        takes once TIMED_STEPS have run (see _fitter); None returned if it says stop."""
        from rich.progress import (BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        began = time.perf_counter()
        timed_from = None
        self.network.train()
        trainable = [p for group in optimizer.param_groups for p in group["params"]]
        losses = []
        columns = (TextColumn(description), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(),
                   TextColumn("eta"), TimeRemainingColumn())
        with progress_bar(*columns, transient=True, enabled=self.verbose) as bar:
            task = bar.add_task(description, total=len(loader), loss=float("nan"))
            for step, (images, targets, _indices, _errors) in enumerate(loader, first_step):
                for group in optimizer.param_groups:
                    group["lr"], beta1 = one_cycle(step, total_steps, group["peak"],
                                                   self.config.warmup_fraction)
                    group["betas"] = (beta1, group["betas"][1])
                # a step all processes take, or none: a slice of unreadable pictures skips it
                if not all_agree(self.processes, images is not None):
                    continue
                loss = self.train_step(images, targets, optimizer, trainable)
                losses.append(loss)
                bar.update(task, advance=1, loss=sum(losses) / len(losses))
                if fit is not None and len(losses) == TIMED_STEPS[0]:
                    timed_from = time.perf_counter()
                elif fit is not None and len(losses) == TIMED_STEPS[1]:
                    per_step = (time.perf_counter() - timed_from) / (TIMED_STEPS[1]
                                                                     - TIMED_STEPS[0])
                    total_steps, fit = fit(per_step, time.perf_counter() - began), None
                    if not total_steps:
                        return None
        if fit is not None and losses:  # an epoch shorter than TIMED_STEPS: timed whole
            fit((time.perf_counter() - began) / len(losses), time.perf_counter() - began,
                finished=True)
        return sum(losses) / max(1, len(losses))

    def train_step(self, images, targets, optimizer, trainable) -> float:
        """One optimizer step on a batch; returns its loss (used by the loop and lr_find)."""
        images = images.to(self.device, memory_format=torch.channels_last, non_blocking=True)
        targets = targets.to(self.device, non_blocking=True)
        # bf16 on this project's CPUs (no AVX-512 BF16) is 6-11x slower: autocast on GPUs only
        with torch.autocast(self.device.type, dtype=torch.bfloat16,
                            enabled=self.device.type == "cuda"):
            frozen, parallel = self._parallel or (None, None)
            if frozen != self.network.frozen:  # lr_find, or a phase of one process
                parallel = None
            if self.network.frozen:
                with torch.no_grad():  # no graph through a frozen backbone: 2-3x faster
                    features = self.network.features(images)
                logits = (parallel or self.network.head)(features)
            else:
                logits = (parallel or self.network)(images)
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.clip_gradient:
            torch.nn.utils.clip_grad_norm_(trainable, self.config.clip_gradient)
        optimizer.step()
        return float(loss.detach())

    def seed_epoch(self, epoch: int, loader) -> None:
        """Same seed, same batches and augmentation per epoch, also after a resume and with
        any number of DataLoader workers."""
        seed = self.config.seed * 1000 + epoch
        torch.manual_seed(seed)
        if loader.generator is not None:
            loader.generator.manual_seed(seed)
        loader.dataset.seed = seed
