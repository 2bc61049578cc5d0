"""lr_find: train briefly with a rising learning rate and record the loss (fastai's LR finder)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from rich.progress import (BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from imgclf._progress import bar as progress_bar
from imgclf.plots import plot_lr_find

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class LearningRates:
    """lr_find's result: the rates tried, the smoothed loss at each, and a suggestion."""

    learning_rates: list[float]
    losses: list[float]

    @property
    def suggestion(self) -> float:
        """The rate where the loss falls fastest (before its minimum), like fastai's 'steep'."""
        if len(self.losses) < 5:
            return self.learning_rates[0] if self.learning_rates else 1e-3
        end = min(range(len(self.losses)), key=self.losses.__getitem__)
        logs = [math.log10(r) for r in self.learning_rates]
        slopes = [(self.losses[i + 1] - self.losses[i]) / (logs[i + 1] - logs[i])
                  for i in range(max(1, end - 1))]
        steepest = min(range(len(slopes)), key=slopes.__getitem__)
        return self.learning_rates[steepest]

    @property
    def minimum(self) -> float:
        """The rate at the lowest loss, divided by 10 (a safe choice)."""
        return self.learning_rates[min(range(len(self.losses)), key=self.losses.__getitem__)] / 10

    def plot(self) -> Figure:
        return plot_lr_find(self.learning_rates, self.losses, self.suggestion)


def find_learning_rate(network: torch.nn.Module, loader, step_once: Callable[..., float], *,
                       weight_decay: float, start: float = 1e-7, end: float = 10.0,
                       steps: int = 100, show_progress: bool = True) -> LearningRates:
    """Up to ``steps`` training steps at rates rising from start to end (log scale); stops
    early once the loss explodes. The network's weights are restored afterwards.

    step_once(images, targets, optimizer, trainable) takes one optimizer step and returns its
    loss: the training loop's own step (Learner.train_step), so lr_find trains as a run does.
    """
    saved = copy.deepcopy(network.state_dict())
    trainable = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=start, weight_decay=weight_decay)
    rates, losses, smooth, best = [], [], 0.0, float("inf")
    network.train()
    step = 0
    columns = (TextColumn("Finding a learning rate"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    bar = progress_bar(*columns, enabled=show_progress)
    task = bar.add_task("lr_find", total=steps)
    try:
        bar.start()
        while step < steps:
            for images, targets, _indices, _errors in loader:
                if images is None:
                    continue
                rate = start * (end / start) ** (step / (steps - 1))
                for group in optimizer.param_groups:
                    group["lr"] = rate
                loss = step_once(images, targets, optimizer, trainable)
                smooth = 0.98 * smooth + 0.02 * loss
                smoothed = smooth / (1 - 0.98 ** (step + 1))
                rates.append(rate)
                losses.append(smoothed)
                best = min(best, smoothed)
                step += 1
                bar.advance(task)
                if step >= steps or not math.isfinite(smoothed) or smoothed > 4 * best:
                    step = steps
                    break
    finally:
        bar.stop()
        network.load_state_dict(saved)
    return LearningRates(rates, losses)
