"""Figures drawn from data (matplotlib, no display needed): nothing here computes results.

Shared by every stage that draws (ImageData.show_batch, lr_find, Evaluation, the report);
it imports nothing of imgclf, and matplotlib only when a figure is drawn (it takes a
second to import, which `import imgclf` and the CLI should not pay).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    # Figure() rather than pyplot: no GUI backend, no global state, safe in threads and servers.
    return _shown_figure()(figsize=(width, height), layout="constrained")


def _shown_figure() -> type:
    """ShownFigure: a matplotlib Figure whose _repr_png_ a notebook shows, so a figure
    appears without pyplot or show(). Made on first use (matplotlib takes a second to
    import) and kept as this module's attribute, so figures pickle and unpickle."""
    shown = globals().get("ShownFigure")
    if shown is None:
        from matplotlib.figure import Figure

        class ShownFigure(Figure):
            def _repr_png_(self) -> bytes:
                buffer = io.BytesIO()
                self.savefig(buffer, format="png", dpi=80)
                return buffer.getvalue()

        ShownFigure.__module__, ShownFigure.__qualname__ = __name__, "ShownFigure"
        globals()["ShownFigure"] = shown = ShownFigure
    return shown


def __getattr__(name: str):
    if name == "ShownFigure":  # unpickling a figure in a new process
        return _shown_figure()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def plot_pictures(pictures: Sequence[np.ndarray | torch.Tensor], titles: Sequence[str], *,
                  mean: Sequence[float], std: Sequence[float], columns: int = 4) -> Figure:
    """A grid of normalised pictures (3 x H x W arrays or tensors: the evaluation pipeline's or
    the training one's), un-normalised for display, with titles."""
    count = max(1, len(pictures))
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    figure = _figure(2.6 * columns, 2.8 * rows)
    axes = figure.subplots(rows, columns, squeeze=False)
    spread = np.asarray(std, np.float32).reshape(3, 1, 1)
    centre = np.asarray(mean, np.float32).reshape(3, 1, 1)
    for axis in axes.flat:
        axis.axis("off")
    for axis, picture, title in zip(axes.flat, pictures, titles):
        values = np.asarray(picture, dtype=np.float32)  # a tensor on the CPU converts too
        shown = np.clip(values * spread + centre, 0, 1).transpose(1, 2, 0)
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


def confused_subset(matrix, max_classes: int) -> list[int]:
    """Indices of the classes of the most-confused pairs, at most max_classes, in class order.

    With 120 dog breeds the full matrix is unreadable. As in the fastai tutorial, which builds
    its sub-matrix from ``most_confused()[:5]``, the classes come from the pairs with the most
    mistakes, first to last, so every top pair that fits is shown whole; a class in many small
    mistakes does not push out the pair with the most.
    """
    size = len(matrix)
    if size <= max_classes:
        return list(range(size))
    mistakes = np.asarray(matrix, dtype=float).copy()
    np.fill_diagonal(mistakes, 0)
    actual, predicted = np.nonzero(mistakes)
    # most mistakes first; ties: the pair with the more confused classes, then class order
    involvement = mistakes.sum(axis=0) + mistakes.sum(axis=1)
    order = sorted(zip(actual.tolist(), predicted.tolist()), key=lambda pair: (
        -mistakes[pair], -(involvement[pair[0]] + involvement[pair[1]]), pair))
    chosen: list[int] = []
    for pair in order:
        new = [index for index in pair if index not in chosen]
        if len(chosen) + len(new) <= max_classes:
            chosen += new
        if len(chosen) == max_classes:
            break
    # room left (the next pair did not fit whole): the classes in the most mistakes
    for index in np.argsort(-involvement, kind="stable"):
        if len(chosen) >= max_classes:
            break
        if int(index) not in chosen:
            chosen.append(int(index))
    return sorted(chosen)


def plot_confusion_matrix(matrix, classes: Sequence[str], *, normalize: bool = False,
                          max_classes: int = 20) -> Figure:
    """Actual (rows) against predicted (columns); many classes -> the most-confused sub-matrix."""
    matrix = np.asarray(matrix)
    keep = confused_subset(matrix, max_classes)
    shown = matrix[np.ix_(keep, keep)]
    labels = [classes[i] for i in keep]
    size = len(keep)
    side = min(14.0, max(4.0, 0.45 * size + 2.5))
    figure = _figure(side, side * 0.9)
    axis = figure.subplots()
    image = axis.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else max(1, shown.max()))
    figure.colorbar(image, ax=axis, shrink=0.8)
    axis.set_xticks(range(size), labels, rotation=90 if size > 6 else 0)
    axis.set_yticks(range(size), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("actual")
    title = "Confusion matrix" + (" (each row sums to 1)" if normalize else "")
    if size < len(classes):
        title += f"\n{size} most-confused of {len(classes)} classes"
    axis.set_title(title)
    if size <= 30:
        threshold = (1 if normalize else shown.max()) / 2
        for row in range(size):
            for column in range(size):
                value = shown[row, column]
                text = f"{value:.2f}" if normalize else str(int(value))
                axis.text(column, row, text, ha="center", va="center", fontsize=10 if size < 12 else 7,
                          color="white" if value > threshold else "black")
    return figure


def plot_top_losses(top_losses: Sequence, pictures: Sequence, *, columns: int = 3,
                    heatmaps: Sequence | None = None) -> Figure:
    """A grid of the worst pictures titled predicted / actual / loss / probability.

    pictures: each entry's picture (a PIL image or an array), or None where it is unreadable.
    heatmaps: each picture's heatmap (0..1, the picture's size) to lay over it, or None.
    """
    count = max(1, len(top_losses))
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    figure = _figure(3.3 * columns, 3.5 * rows)
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for position, (axis, entry, picture) in enumerate(zip(axes.flat, top_losses, pictures)):
        if picture is None:
            axis.text(0.5, 0.5, "unreadable", ha="center")
        else:
            axis.imshow(picture)
        heat = heatmaps[position] if heatmaps is not None else None
        if picture is not None and heat is not None:
            _draw_heat(axis, heat)
        wrong = entry.predicted != entry.actual
        axis.set_title(f"{entry.predicted} / {entry.actual}\nloss {entry.loss:.2f}, "
                       f"p {entry.probability:.2f}", fontsize=10,
                       color="firebrick" if wrong else "black")
    figure.suptitle("Top losses: predicted / actual"
                    + (" (heat: evidence for the prediction)" if heatmaps is not None else ""),
                    fontsize=12)
    return figure


def plot_per_class(rows: Sequence[dict], *, limit: int = 30) -> Figure:
    """Horizontal bars of each class's F1 (the worst `limit` classes when there are many)."""
    rows = sorted(rows, key=lambda row: row["f1"])[:limit]
    figure = _figure(6.5, max(2.0, 0.32 * len(rows) + 1.2))
    axis = figure.subplots()
    labels = [row["class"] for row in rows]
    axis.barh(labels, [row["f1"] for row in rows], color="steelblue")
    axis.set_xlim(0, 1)
    axis.set_xlabel("F1")
    for position, row in enumerate(rows):
        axis.text(min(row["f1"] + 0.01, 0.9), position, f"{row['f1']:.2f}", va="center", fontsize=9)
    axis.set_title("F1 per class" + (f" (worst {limit})" if len(rows) == limit else ""))
    return figure


def plot_precision_recall(curves: Sequence[tuple], *, limit: int = 12) -> Figure:
    """Precision-recall curves, one per label: (name, recall, precision, (recall, precision)
    at its threshold, marked). The first `limit` are drawn."""
    curves = list(curves)[:limit]
    figure = _figure(6.5, 4.5)
    axis = figure.subplots()
    for name, recall, precision, (at_recall, at_precision) in curves:
        line, = axis.plot(recall, precision, label=name, linewidth=1.5)
        axis.plot([at_recall], [at_precision], "o", color=line.get_color())
    axis.set_xlim(0, 1.02)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    if curves:
        axis.legend(loc="lower left", fontsize=8)
    axis.set_title("Precision and recall per label (dot: its threshold)")
    return figure


def plot_history(history: Sequence[dict]) -> Figure:
    """Training and validation loss per epoch, and validation accuracy on a second axis."""
    figure = _figure(6.5, 3.8)
    axis = figure.subplots()
    epochs = [row["epoch"] for row in history]
    axis.plot(epochs, [row["train_loss"] for row in history], "o-", label="train loss")
    axis.plot(epochs, [row["valid_loss"] for row in history], "o-", label="valid loss")
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss")
    second = axis.twinx()
    second.plot(epochs, [row["accuracy"] for row in history], "s--", color="seagreen",
                label="accuracy")
    second.set_ylabel("accuracy")
    frozen = [row["epoch"] for row in history if row.get("phase") == "head"]
    if frozen:
        axis.axvspan(min(frozen) - 0.5, max(frozen) + 0.5, color="grey", alpha=0.12)
        axis.text(min(frozen) - 0.4, axis.get_ylim()[1] * 0.95, "head only", fontsize=8, va="top")
    lines = axis.get_legend_handles_labels()
    extra = second.get_legend_handles_labels()
    axis.legend(lines[0] + extra[0], lines[1] + extra[1], loc="center right")
    axis.set_title("Training history")
    return figure


def plot_explanation(picture, heatmap, *, title: str, heat_title: str,
                     neighbours: Sequence[tuple[object, str]] = ()) -> Figure:
    """A picture with its heatmap laid over it (left) and the nearest training pictures
    (right, up to 4: each a picture or None when it is not at hand, and a caption)."""
    count = min(4, len(neighbours))
    columns = 2 + (2 if count > 1 else count)
    figure = _figure(2.4 * columns, 5.0)
    grid = figure.add_gridspec(2, columns)
    axis = figure.add_subplot(grid[:, :2])
    axis.imshow(picture)
    _draw_heat(axis, heatmap)
    axis.set_title(f"{title}\n{heat_title}", fontsize=11)
    axis.axis("off")
    for position, (thumbnail, caption) in enumerate(neighbours[:count]):
        small = figure.add_subplot(grid[position // 2, 2 + position % 2])
        small.axis("off")
        if thumbnail is None:
            small.text(0.5, 0.5, "picture\nnot at hand", ha="center", va="center", fontsize=9)
        else:
            small.imshow(thumbnail)
        small.set_title(caption, fontsize=8)
    return figure


def _draw_heat(axis, heatmap, *, strength: float = 0.45) -> None:
    """A heatmap (H x W, 0..1) over the picture drawn on an axis, pixel for pixel."""
    height, width = np.asarray(heatmap).shape
    axis.imshow(heatmap, cmap="jet", alpha=strength, vmin=0, vmax=1,
                extent=(-0.5, width - 0.5, height - 0.5, -0.5))


def overlay(picture, heatmap, *, strength: float = 0.45) -> np.ndarray:
    """A picture (H x W x 3 uint8) with its heatmap (H x W, 0..1) blended over it in the
    colours plot_explanation uses: for the HTML report and the web page."""
    from matplotlib import colormaps

    colours = colormaps["jet"](np.clip(np.asarray(heatmap, np.float32), 0, 1))[..., :3]
    blended = (1 - strength) * np.asarray(picture, np.float32) / 255 + strength * colours
    return (np.clip(blended, 0, 1) * 255).round().astype(np.uint8)
