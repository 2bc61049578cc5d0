"""Fitting a whole-network phase to the time limit, from its first timed batches.

A phase begun afresh under a time limit (auto mode on a CPU) times its first training steps;
steps.train_epoch then calls the ``PhaseFitter`` with the seconds a step takes. It prices the
phase's epochs (plan.fit_phase: the steps, validation, stored views and the time kept for the
run's end), keeps the epochs that fit or none, decides whether half the epochs reuse the
pictures of an earlier one (reuse_views=None), says so in one line, and saves the shortened
plan so that a resumed run goes on as decided here.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from imgclf._progress import console
from imgclf.data.imagedata import ImageData
from imgclf.training.distributed import agree
from imgclf.training.frozen import TrainingViews
from imgclf.training.plan import Phase, fit_phase, full_step_seconds, small_epochs


class PhaseFitter:
    """Called by steps.train_epoch with the seconds a training step takes: fits plan[index]'s
    epochs to the time left and returns their steps (0: none fit, the phase's first weights
    restored and the learner told why)."""

    # learner: the Learner running the phase (not imported: learner.py imports this module)
    def __init__(self, learner: Any, plan: list[Phase], index: int, steps_per_epoch: int,
                 limit: float, sizes: dict[int, ImageData], views: TrainingViews | None):
        self.learner, self.plan, self.index = learner, plan, index
        self.steps_per_epoch, self.limit, self.sizes, self.views = (
            steps_per_epoch, limit, sizes, views)
        self.phase = plan[index]
        # the weights the phase began with: restored when not one epoch fits
        self.snapshot = {k: v.detach().clone()
                         for k, v in learner.network.state_dict().items()}
        self.pictures = {split: len(items) for split, items in learner.data.items.items()}
        self.small = (small_epochs(self.phase, learner.config.progressive_resizing)
                      if len(sizes) > 1 else 0)

    def __call__(self, step_seconds: float, into_epoch: float, finished: bool = False) -> int:
        learner, phase, views, sizes = self.learner, self.phase, self.views, self.sizes
        config = learner.config
        # an epoch already finished is kept whatever the time; else the one the run ends
        # on: the best so far (restore_best) or the last
        last = (learner.best if config.restore_best and learner.best else
                learner.history[-1] if learner.history else None)
        valid_start = learner._valid_start
        epochs, message, reuse = fit_phase(
            phase, limit=self.limit, spent=time.perf_counter() - learner._started,
            into_epoch=into_epoch, kept=None if finished or last is None else last["phase"],
            # the first epoch, timed, trains on the smaller crops when there are any (and
            # keeps them if the limit leaves one epoch: it began on them)
            step_seconds=full_step_seconds(step_seconds, timed_small=self.small > 0,
                                           area_ratio=(min(sizes) / max(sizes)) ** 2),
            steps_per_epoch=self.steps_per_epoch, pictures=self.pictures,
            # stored pictures too large to keep: every epoch reads, priced so
            front_seconds=views.front_seconds() if views and not views.too_large else None,
            reuse=views.reuse if views and not views.too_large else False,
            validate_seconds=valid_start.seconds, batch_size=learner.data.config.batch_size,
            full_validate_seconds=valid_start.full_seconds,
            stored=learner.network.frozen_start() > 0 and valid_start.too_large is None)
        if views is not None:
            views.reuse = reuse
            if not reuse:
                views.drop()
        epochs = int(agree(learner.processes, epochs))  # the first process's estimate
        if not epochs:
            learner.network.load_state_dict(self.snapshot)
            learner._out_of_time = message
            return 0
        reuse = views.reuse if views is not None and config.reuse_views is None else None
        if epochs < phase.epochs or reuse:  # a resumed run goes on as decided here
            self.plan[self.index] = replace(phase, epochs=epochs, reuse_views=reuse)
            learner._save_settings(self.plan)
        if learner.verbose:
            console().print(message, soft_wrap=True)
        return epochs * self.steps_per_epoch
