"""Figures drawn from data (matplotlib, no display needed): nothing here computes results."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    # Figure() rather than pyplot: no GUI backend, no global state, safe in threads and servers.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def plot_pictures(pictures: Sequence[torch.Tensor], titles: Sequence[str], *,
                  mean: Sequence[float], std: Sequence[float], columns: int = 4) -> Figure:
    """A grid of normalised image tensors (C, H, W), un-normalised for display, with titles."""
    import torch

    count = max(1, len(pictures))
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    figure = _figure(2.6 * columns, 2.8 * rows)
    axes = figure.subplots(rows, columns, squeeze=False)
    mean_t = torch.tensor(list(mean)).view(3, 1, 1)
    std_t = torch.tensor(list(std)).view(3, 1, 1)
    for axis in axes.flat:
        axis.axis("off")
    for axis, picture, title in zip(axes.flat, pictures, titles):
        shown = (picture.float() * std_t + mean_t).clamp(0, 1).permute(1, 2, 0).numpy()
        axis.imshow(shown)
        axis.set_title(title, fontsize=11)
    return figure


def plot_lr_find(learning_rates: Sequence[float], losses: Sequence[float],
                 suggestion: float | None = None) -> Figure:
    """Loss against learning rate (log scale), with the suggested rate marked."""
    figure = _figure(6, 4)
    axis = figure.subplots()
    axis.plot(learning_rates, losses)
    axis.set_xscale("log")
    axis.set_xlabel("learning rate")
    axis.set_ylabel("loss (smoothed)")
    if suggestion is not None:
        index = min(range(len(learning_rates)),
                    key=lambda i: abs(learning_rates[i] - suggestion))
        axis.plot([suggestion], [losses[index]], "o", color="red",
                  label=f"suggested {suggestion:.2g}")
        axis.legend()
    axis.set_title("Learning rate finder")
    return figure
