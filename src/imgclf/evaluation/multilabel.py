"""Evaluation of a multi-label model: per-label precision, recall, F1 and average precision,
mean average precision, exact match, and each label's decision threshold.

A multi-label model gives every label its own probability; a label is given where its
probability reaches the label's threshold. ``calibration.best_thresholds`` chooses those
thresholds on the validation pictures (the best F1 per label), and ``MultiLabelEvaluation``
judges them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgclf._files import write_text
from imgclf._html import cards, escape, figure_img, percent, picture_img, table
from imgclf.calibration import DEFAULT_THRESHOLD
from imgclf.data.decoding import load_image
from imgclf.errors import ImageError
from imgclf.inference import loop
from imgclf.modelfile import ModelInfo
from imgclf.plots import plot_precision_recall

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class MultiLabelEvaluation:
    """Per-picture results of a multi-label model on labelled pictures, and their figures.

    Example:
        >>> evaluation = model.evaluate()
        >>> evaluation.mean_average_precision, evaluation.exact_match
        (0.97, 0.88)
        >>> evaluation.per_label()[0]       # the weakest label first
        {'label': 'bees', 'precision': 0.9, 'recall': 0.85, 'f1': 0.87, ...}
    """

    classes: list[str]
    paths: list[Path]
    targets: np.ndarray  # (n, labels) 0/1
    probabilities: np.ndarray  # (n, labels), each label's own
    thresholds: np.ndarray  # (labels,) a label is given at or above its threshold
    split: str = "valid"
    skipped: list[tuple[str, str]] = field(default_factory=list)
    info: ModelInfo | None = None
    # the "unknown" detector's scores (higher = stranger) and threshold, as in Evaluation
    outlier_scores: np.ndarray | None = None
    threshold: float = float("inf")
    strangers: list[Path] = field(default_factory=list)
    stranger_scores: np.ndarray | None = None
    model: Any = field(default=None, repr=False, compare=False)

    multi_label = True

    def __post_init__(self):
        self.targets = np.asarray(self.targets, dtype=np.float64)
        self.probabilities = np.asarray(self.probabilities, dtype=np.float64)
        self.thresholds = np.asarray(self.thresholds, dtype=np.float64)
        if self.targets.shape != self.probabilities.shape or len(self.paths) != len(self.targets):
            raise ValueError("paths, targets and probabilities must have the same length")

    # --- per picture ---

    @property
    def predictions(self) -> np.ndarray:
        """(n, labels) True where a label is given (its probability reaches its threshold)."""
        return self.probabilities >= self.thresholds

    @property
    def losses(self) -> np.ndarray:
        """Each picture's binary cross-entropy, averaged over the labels."""
        return loop.losses(self.probabilities, self.targets)

    # --- overall ---

    @property
    def loss(self) -> float:
        return float(self.losses.mean()) if len(self.targets) else 0.0

    @property
    def exact_match(self) -> float:
        """Share of pictures whose set of labels is given exactly (subset accuracy)."""
        if not len(self.targets):
            return 0.0
        return float((self.predictions == (self.targets > 0.5)).all(axis=1).mean())

    @property
    def accuracy(self) -> float:
        """Share of (picture, label) pairs right at 0.5, fastai's accuracy_multi: the accuracy
        training prints and the model file keeps (its thresholds are chosen after)."""
        return self.accuracy_multi()

    @property
    def labels_right(self) -> float:
        """Share of (picture, label) pairs right at the model's thresholds."""
        if not len(self.targets):
            return 0.0
        return float((self.predictions == (self.targets > 0.5)).mean())

    @property
    def error_rate(self) -> float:
        return 1.0 - self.accuracy

    def accuracy_multi(self, threshold: float = DEFAULT_THRESHOLD) -> float:
        """fastai's accuracy_multi: (picture, label) pairs right at one threshold for all."""
        if not len(self.targets):
            return 0.0
        return float(((self.probabilities >= threshold) == (self.targets > 0.5)).mean())

    def per_label(self, thresholds: np.ndarray | float | None = None) -> list[dict[str, Any]]:
        """Precision, recall, F1, average precision, support and threshold of every label,
        the weakest (lowest average precision, then F1) first.

        thresholds: judge at these instead of the model's (one for all, or one per label).
        """
        from sklearn.metrics import average_precision_score

        given = self.probabilities >= (self.thresholds if thresholds is None else thresholds)
        truth = self.targets > 0.5
        rows = []
        for label, name in enumerate(self.classes):
            hits = int((given[:, label] & truth[:, label]).sum())
            named, present = int(given[:, label].sum()), int(truth[:, label].sum())
            precision = hits / named if named else 0.0
            recall = hits / present if present else 0.0
            f1 = 2 * hits / (named + present) if named + present else 0.0
            average = (float(average_precision_score(truth[:, label], self.probabilities[:, label]))
                       if 0 < present < len(truth) else float("nan"))
            rows.append({"label": name, "precision": precision, "recall": recall, "f1": f1,
                         "average_precision": average, "support": present,
                         "threshold": float(np.broadcast_to(
                             self.thresholds if thresholds is None else thresholds,
                             (len(self.classes),))[label])})
        return sorted(rows, key=lambda row: (np.nan_to_num(row["average_precision"], nan=2.0),
                                             row["f1"], row["label"]))

    @property
    def mean_average_precision(self) -> float:
        """The mean over labels of average precision (the area under each label's
        precision-recall curve), over the labels both present and absent in this split."""
        values = [row["average_precision"] for row in self.per_label()
                  if row["average_precision"] == row["average_precision"]]
        return float(np.mean(values)) if values else float("nan")

    def macro_f1_at(self, thresholds: np.ndarray | float | None = None) -> float:
        """The mean F1 over the labels present in this split, at the model's thresholds or at
        the ones given (0.5, say, to see what the chosen thresholds bought)."""
        rows = [row for row in self.per_label(thresholds) if row["support"] > 0]
        return float(np.mean([row["f1"] for row in rows])) if rows else 0.0

    @property
    def macro_f1(self) -> float:
        return self.macro_f1_at()

    def top_losses(self, k: int = 9, label: str | None = None) -> list[dict[str, Any]]:
        """The k pictures the model got most wrong: overall (their mean loss over the
        labels), or for one label (that label's loss). Each: path, labels, given, loss."""
        if label is None:
            losses = self.losses
        else:
            column = self.classes.index(label)
            truth = self.targets[:, column]
            chance = np.clip(self.probabilities[:, column], 1e-12, 1 - 1e-12)
            losses = -(truth * np.log(chance) + (1 - truth) * np.log(1 - chance))
        order = np.argsort(-losses, kind="stable")[:k]
        given = self.predictions
        return [{"path": self.paths[i], "loss": float(losses[i]),
                 "labels": [c for c, t in zip(self.classes, self.targets[i]) if t > 0.5],
                 "given": [c for c, g in zip(self.classes, given[i]) if g]}
                for i in order]

    # --- the unknown answer ---

    @property
    def acceptance(self) -> float:
        """Share of the pictures not called unknown."""
        if self.outlier_scores is None or not len(self.targets):
            return float("nan")
        return float((self.outlier_scores <= self.threshold).mean())

    @property
    def strangers_flagged(self) -> float | None:
        if self.stranger_scores is None or not len(self.stranger_scores):
            return None
        return float((self.stranger_scores > self.threshold).mean())

    def summary(self) -> dict[str, Any]:
        """The headline figures as plain values (JSON-ready)."""
        figures = {"split": self.split, "pictures": len(self.targets), "multi_label": True,
                   "mean_average_precision": self.mean_average_precision,
                   "macro_f1": self.macro_f1, "macro_f1_at_0.5": self.macro_f1_at(0.5),
                   "exact_match": self.exact_match, "labels_right": self.labels_right,
                   "accuracy": self.accuracy, "error_rate": self.error_rate,
                   "loss": self.loss, "skipped": len(self.skipped)}
        if self.outlier_scores is not None:
            figures.update(acceptance=self.acceptance, strangers=len(self.strangers),
                           strangers_flagged=self.strangers_flagged)
        return figures

    def most_confused(self, min_count: int = 1) -> list[tuple[str, str, int]]:
        """(label, "missed" or "given wrongly", count) for each label's mistakes, most first:
        a multi-label model has no confusion between classes, only labels missed and
        labels given that are not there."""
        given, truth = self.predictions, self.targets > 0.5
        pairs = []
        for label, name in enumerate(self.classes):
            missed = int((truth[:, label] & ~given[:, label]).sum())
            wrong = int((given[:, label] & ~truth[:, label]).sum())
            pairs += [(name, "missed", missed), (name, "given wrongly", wrong)]
        return sorted([pair for pair in pairs if pair[2] >= min_count],
                      key=lambda pair: (-pair[2], pair[0], pair[1]))

    # --- drawing ---

    def plot_per_label(self) -> Figure:
        """Each label's precision-recall curve, its threshold marked."""
        from sklearn.metrics import precision_recall_curve

        curves = []
        truth = self.targets > 0.5
        for label, name in enumerate(self.classes):
            if not 0 < truth[:, label].sum() < len(truth):
                continue
            precision, recall, cuts = precision_recall_curve(truth[:, label],
                                                             self.probabilities[:, label])
            # the curve's point at the threshold: the first cut at or above it (past every
            # cut, the curve's end: precision 1, recall 0)
            at = int(np.searchsorted(cuts, self.thresholds[label]))
            curves.append((name, recall, precision, (recall[at], precision[at])))
        return plot_precision_recall(curves)

    plot_per_class = plot_per_label

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "model": None}

    def __repr__(self) -> str:
        figures = ", ".join(f"{name}={value:.4g}" if isinstance(value, float) else
                            f"{name}={value!r}" for name, value in self.summary().items()
                            if value is not None and name != "multi_label")
        return f"MultiLabelEvaluation({len(self.classes)} labels, {figures})"

    def _repr_html_(self) -> str:
        """In a notebook: the headline figures and the per-label table, weakest first."""
        return (f"<div><b>Evaluation on the {escape(self.split)} split</b>"
                + cards(self._cards()) + self._label_table() + "</div>")

    def _cards(self) -> list[tuple[str, str]]:
        figures = [("mean average precision", f"{self.mean_average_precision:.3f}"),
                   ("macro F1", f"{self.macro_f1:.3f}"),
                   ("exact match", percent(self.exact_match)),
                   ("labels right", percent(self.labels_right)),
                   ("pictures", str(len(self.targets)))]
        if self.outlier_scores is not None:
            figures.append(("accepted", percent(self.acceptance)))
        return figures

    def _label_table(self) -> str:
        rows = [(row["label"], f"{row['average_precision']:.3f}", f"{row['f1']:.3f}",
                 f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['threshold']:.2f}",
                 row["support"]) for row in self.per_label()]
        return table(("label", "average precision", "F1", "precision", "recall",
                      "threshold", "pictures"), rows, numbers=(1, 2, 3, 4, 5, 6), limit=50)

    def report(self, path: str | os.PathLike, *, data: Any = None, issues: Any = None,
               top_k: int = 6) -> Path:
        """Write a self-contained HTML page: the headline figures, the per-label table, each
        label's precision-recall curve, and the worst pictures overall and per label."""
        def tiles(entries: Sequence[dict[str, Any]]) -> str:
            out = []
            for entry in entries:
                try:
                    image = picture_img(load_image(entry["path"], max_side=320), side=180)
                except ImageError:
                    image = "(unreadable now)"
                out.append(f"<div style='display:inline-block;width:190px;margin:4px;"
                           f"vertical-align:top;font-size:.85em'>{image}<br>"
                           f"{escape(Path(entry['path']).name)}<br>labels: "
                           f"{escape(', '.join(entry['labels']) or '-')}<br>given: "
                           f"{escape(', '.join(entry['given']) or '-')}<br>"
                           f"loss {entry['loss']:.3f}</div>")
            return "".join(out)

        title = f"imgclf report: {len(self.classes)} labels, {self.split} split"
        weakest = [row["label"] for row in self.per_label()[:5]]
        body = (f"<h1>{escape(title)}</h1>" + cards(self._cards())
                + "<h2>Per label, weakest first</h2>" + self._label_table()
                + "<h2>Precision and recall</h2>" + figure_img(self.plot_per_label())
                + "<h2>Top losses</h2>" + tiles(self.top_losses(top_k))
                + "".join(f"<h3>{escape(label)}</h3>" + tiles(self.top_losses(top_k, label))
                          for label in weakest))
        return write_text(path, f"<!doctype html><html><head><meta charset=utf-8><title>"
                                f"{escape(title)}</title></head><body style='font-family:"
                                f"system-ui,sans-serif;max-width:1100px;margin:auto'>{body}"
                                f"</body></html>")


def multi_label_targets(labels: Sequence[tuple[str, ...]], classes: Sequence[str]) -> np.ndarray:
    """(pictures, labels) 0/1 from each picture's tuple of labels."""
    index = {name: i for i, name in enumerate(classes)}
    targets = np.zeros((len(labels), len(classes)))
    for row, names in enumerate(labels):
        for name in names:
            targets[row, index[name]] = 1
    return targets
