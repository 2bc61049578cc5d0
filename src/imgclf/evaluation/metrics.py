"""Evaluation returns data: predictions, losses, metrics, confusion matrix, most-confused pairs.

Plots (plots.py) and the HTML report (report.py) draw from an Evaluation; they compute nothing.
Predictions come from Predictor, the same inference path the web app and export checks use.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgclf._html import cards, escape, figure_img, percent, table
from imgclf.config import InferenceConfig
from imgclf.data.decoding import load_image
from imgclf.data.imagedata import ImageData
from imgclf.data.labels import labels_of
from imgclf.data.sources import find_images
from imgclf.errors import DataError, ImageError, ImgclfError
from imgclf.evaluation.multilabel import MultiLabelEvaluation, multi_label_targets
from imgclf.evaluation.report import write_report
from imgclf.inference import loop
from imgclf.inference.explain import Explanation
from imgclf.inference.predictor import Predictor
from imgclf.modelfile import ModelInfo
from imgclf.plots import plot_confusion_matrix, plot_per_class, plot_top_losses

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class TopLoss:
    """One of the pictures the model got most wrong (or least sure right)."""

    path: Path
    actual: str
    predicted: str
    probability: float  # of the predicted class
    loss: float


@dataclass
class Evaluation:
    """Per-picture results of a model on labelled pictures, and the figures derived from them.

    Example:
        >>> evaluation = evaluate(model, data)
        >>> evaluation.accuracy, evaluation.most_confused()[:1]
        (0.948, [('ants', 'bees', 5)])
        >>> evaluation.plot_confusion_matrix().savefig("confusion.png")
    """

    classes: list[str]
    paths: list[Path]
    targets: np.ndarray  # (n,) class indices
    probabilities: np.ndarray  # (n, classes)
    split: str = "valid"
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # what the model file says (backbone, training history and settings), when known
    info: ModelInfo | None = None
    # the "unknown" detector: each picture's outlier score (higher = stranger), the threshold
    # above which a picture is unknown, and pictures of none of the classes with their scores
    outlier_scores: np.ndarray | None = None
    threshold: float = float("inf")
    strangers: list[Path] = field(default_factory=list)
    stranger_scores: np.ndarray | None = None
    # the Predictor that made it, for explanations (None for one built from data alone)
    model: Predictor | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        self.targets = np.asarray(self.targets, dtype=np.int64)
        self.probabilities = np.asarray(self.probabilities, dtype=np.float64)
        if len(self.targets) != len(self.probabilities) or len(self.paths) != len(self.targets):
            raise ValueError("paths, targets and probabilities must have the same length")

    # --- per picture ---

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def losses(self) -> np.ndarray:
        """Cross-entropy of each picture: -log(probability given to its true class)."""
        return loop.losses(self.probabilities, self.targets)

    # --- overall ---

    @property
    def accuracy(self) -> float:
        return float((self.predictions == self.targets).mean()) if len(self.targets) else 0.0

    @property
    def error_rate(self) -> float:
        return 1.0 - self.accuracy

    @property
    def loss(self) -> float:
        return float(self.losses.mean()) if len(self.targets) else 0.0

    def confusion_matrix(self, normalize: bool = False) -> np.ndarray:
        """Counts with actual classes as rows and predicted classes as columns.

        normalize: divide each row by its total, so the diagonal is each class's recall.
        """
        size = len(self.classes)
        matrix = np.zeros((size, size), dtype=np.int64)
        np.add.at(matrix, (self.targets, self.predictions), 1)
        if not normalize:
            return matrix
        totals = matrix.sum(axis=1, keepdims=True)
        return np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)

    def per_class(self) -> list[dict[str, Any]]:
        """Precision, recall, F1 and support of every class (scikit-learn's definitions)."""
        from sklearn.metrics import precision_recall_fscore_support

        precision, recall, f1, support = precision_recall_fscore_support(
            self.targets, self.predictions, labels=list(range(len(self.classes))),
            zero_division=0)
        return [{"class": label, "precision": float(p), "recall": float(r), "f1": float(f),
                 "support": int(s)}
                for label, p, r, f, s in zip(self.classes, precision, recall, f1, support)]

    @property
    def macro_f1(self) -> float:
        rows = [row for row in self.per_class() if row["support"] > 0]
        return float(np.mean([row["f1"] for row in rows])) if rows else 0.0

    @property
    def weighted_f1(self) -> float:
        rows = self.per_class()
        total = sum(row["support"] for row in rows)
        return float(sum(row["f1"] * row["support"] for row in rows) / total) if total else 0.0

    def most_confused(self, min_count: int = 1) -> list[tuple[str, str, int]]:
        """(actual, predicted, count) for every mistake made at least min_count times, most first."""
        matrix = self.confusion_matrix()
        pairs = [(self.classes[a], self.classes[p], int(matrix[a, p]))
                 for a in range(len(self.classes)) for p in range(len(self.classes))
                 if a != p and matrix[a, p] >= min_count]
        return sorted(pairs, key=lambda pair: (-pair[2], pair[0], pair[1]))

    def top_losses(self, k: int = 9) -> list[TopLoss]:
        """The k pictures with the highest loss: the worst mistakes first."""
        losses = self.losses
        order = np.argsort(-losses, kind="stable")[:k]
        predictions = self.predictions
        return [TopLoss(self.paths[i], self.classes[self.targets[i]],
                        self.classes[predictions[i]],
                        float(self.probabilities[i, predictions[i]]), float(losses[i]))
                for i in order]

    # --- the unknown answer ---

    @property
    def accepted(self) -> np.ndarray:
        """True for each picture the detector accepts as one of the classes."""
        if self.outlier_scores is None:
            return np.ones(len(self.targets), dtype=bool)
        return self.outlier_scores <= self.threshold

    @property
    def acceptance(self) -> float:
        """Share of the pictures (all of the model's classes) not called unknown."""
        return float(self.accepted.mean()) if len(self.targets) else float("nan")

    @property
    def accepted_accuracy(self) -> float:
        """Accuracy on the pictures the detector accepts."""
        accepted = self.accepted
        hits = self.predictions[accepted] == self.targets[accepted]
        return float(hits.mean()) if accepted.any() else float("nan")

    @property
    def strangers_flagged(self) -> float | None:
        """Share of the stranger pictures called unknown (None without strangers)."""
        if self.stranger_scores is None or not len(self.stranger_scores):
            return None
        return float((self.stranger_scores > self.threshold).mean())

    @property
    def unknown_auroc(self) -> float | None:
        """How well the outlier score ranks strangers above the classes' pictures (1 = always)."""
        if self.outlier_scores is None or self.strangers_flagged is None:
            return None
        from sklearn.metrics import roc_auc_score

        labels = np.r_[np.zeros(len(self.outlier_scores)), np.ones(len(self.stranger_scores))]
        return float(roc_auc_score(labels, np.r_[self.outlier_scores, self.stranger_scores]))

    def summary(self) -> dict[str, Any]:
        """The headline figures as plain values (JSON-ready)."""
        figures = {"split": self.split, "pictures": len(self.targets), "accuracy": self.accuracy,
                   "error_rate": self.error_rate, "loss": self.loss, "macro_f1": self.macro_f1,
                   "weighted_f1": self.weighted_f1, "skipped": len(self.skipped)}
        if self.outlier_scores is not None:
            figures.update(acceptance=self.acceptance, accepted_accuracy=self.accepted_accuracy,
                           strangers=len(self.strangers), strangers_flagged=self.strangers_flagged,
                           unknown_auroc=self.unknown_auroc)
        return figures

    # --- drawing (plots.py does the work) ---

    def plot_confusion_matrix(self, normalize: bool = False, max_classes: int = 20) -> Figure:
        return plot_confusion_matrix(self.confusion_matrix(normalize), self.classes,
                                     normalize=normalize, max_classes=max_classes)

    def plot_top_losses(self, k: int = 9, *, heatmap: bool = True) -> Figure:
        """The k worst pictures; heatmap: with the evidence for each prediction laid over
        it (Grad-CAM, see explain), where the model is at hand and the picture readable."""
        top = self.top_losses(k)
        explanations = [self.explain(entry.path, entry.predicted) if heatmap else None
                        for entry in top]
        if not any(explanations):
            return plot_top_losses(top, [_picture(entry.path) for entry in top])
        return plot_top_losses(
            top, [e.picture if e else _picture(entry.path) for e, entry in zip(explanations, top)],
            heatmaps=[e.heatmap if e else None for e in explanations])

    def explain(self, path: str | os.PathLike, predicted: str | None = None
                ) -> Explanation | None:
        """Why the model answered as it did for one picture (Predictor.explain), the heat for
        `predicted` (the class this evaluation gave it; default: the closest now); None when
        this evaluation has no model at hand, or the picture or the model cannot be read."""
        if self.model is None:
            return None
        index = self.classes.index(predicted) if predicted is not None else None
        try:
            return self.model.explain(path, index=index)
        except ImgclfError:  # unreadable now; an .onnx file has no gradients; file changed
            return None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "model": None}  # figures pickle; a running network does not

    def plot_per_class(self) -> Figure:
        return plot_per_class(self.per_class())

    def __repr__(self) -> str:
        figures = ", ".join(f"{name}={value:.4g}" if isinstance(value, float) else
                            f"{name}={value!r}" for name, value in self.summary().items()
                            if value is not None)
        return f"Evaluation({len(self.classes)} classes, {figures})"

    def _repr_html_(self) -> str:
        """In a notebook: the headline figures, the confusion matrix (the most-confused
        classes when there are many) and the most-confused pairs."""
        summary = self.summary()
        figures = [("accuracy", percent(summary["accuracy"])), ("loss", f"{self.loss:.3f}"),
                   ("macro F1", f"{self.macro_f1:.3f}"), ("pictures", str(len(self.targets)))]
        if self.outlier_scores is not None:
            figures += [("accepted", percent(self.acceptance)),
                        ("accuracy when accepted", percent(self.accepted_accuracy))]
            if self.strangers_flagged is not None:
                figures.append(("strangers called unknown", percent(self.strangers_flagged)))
        pairs = [(actual, predicted, count) for actual, predicted, count
                 in self.most_confused()[:5]]
        return (f"<div><b>Evaluation on the {escape(self.split)} split</b>" + cards(figures)
                + figure_img(self.plot_confusion_matrix(normalize=len(self.classes) > 10),
                             css="", dpi=70)
                + (table(("actual", "predicted as", "times"), pairs, numbers=(2,))
                   if pairs else "<p>No mistakes.</p>") + "</div>")

    def report(self, path: str | os.PathLike, *, data: ImageData | None = None,
               issues: Any = None) -> Path:
        """Write the self-contained HTML report (see report.py); issues: what find_issues
        (imgclf clean) flagged in the data, shown in its data section."""
        return write_report(self, path, data=data, issues=issues)


def evaluate(model: Predictor | Any, data: ImageData, *, split: str = "valid", tta: bool = False,
             batch_size: int = InferenceConfig.batch_size, show_progress: bool = True,
             unknown: str | os.PathLike | Sequence[str | os.PathLike] | None = None
             ) -> Evaluation | MultiLabelEvaluation:
    """Run a model over one split of the data and collect everything needed to judge it (a
    MultiLabelEvaluation for a multi-label model).

    Args:
        model: a Predictor, a Learner, or a model file path.
        split: "valid" or "test".
        tta: test-time augmentation: average each picture with its mirror image (the outlier
            scores come from the plain picture).
        unknown: pictures of none of the classes (a folder or files): how many the model
            calls unknown, and how well its outlier score tells them apart (AUROC).

    Example:
        >>> evaluation = evaluate(imgclf.load("ants.imgclf"), data, split="valid")
        >>> evaluation.summary()["accuracy"]
        0.948
    """
    predictor = _as_predictor(model)
    items = items_to_evaluate(predictor, data, split)
    # Predictor.outputs' loop, over the originals read through their stored square views at
    # the model's input (the arrays predictor.transform gives, without decoding again)
    outputs = loop.run(predictor.network, data.with_input(predictor.input).plain(items),
                       batch_size=batch_size, show_progress=show_progress, tta=tta,
                       description=f"Evaluating on {split}")
    return evaluation_of(predictor, data, split, items, outputs, unknown=unknown,
                         batch_size=batch_size, show_progress=show_progress)


def items_to_evaluate(predictor: Predictor, data: ImageData, split: str) -> list:
    """The labelled pictures of a split that a model can be judged on (DataError when there
    are none, or when the data's labels do not fit the model's)."""
    items = [item for item in data.items[split] if item.label is not None]
    if not items:
        raise DataError(f"The {split} split has no labelled pictures to evaluate.")
    if predictor.info.multi_label != data.multi_label:
        raise DataError(
            "This model gives several labels per picture and the data one (read it with "
            "label_delim)." if predictor.info.multi_label else
            "This model gives one label per picture and the data several: evaluate a model "
            "trained on multi-label data.")
    foreign = sorted({label for item in items for label in labels_of(item)}
                     - set(predictor.classes))
    if foreign:
        raise DataError(f"The {split} pictures include classes the model does not know: "
                        f"{', '.join(foreign)}. Model classes: {', '.join(predictor.classes)}.")
    return items


def evaluation_of(predictor: Predictor, data: ImageData, split: str, items: list,
                  outputs: loop.Outputs, *, unknown: Any = None,
                  batch_size: int = InferenceConfig.batch_size, show_progress: bool = True
                  ) -> Evaluation | MultiLabelEvaluation:
    """evaluate's result from the outputs already computed for `items` (items_to_evaluate), in
    their order: the forward loop's, or a probe's cached embeddings'
    (training.embeddings.cached_outputs)."""
    paths = [item.path for item in items]
    good = outputs.ok
    skipped = ([(str(path), reason) for path, reason in data.report.skipped
                if data.report.skipped_split.get(path) == split]
               + [(e.source, e.reason) for e in outputs.errors])
    if predictor.info.multi_label:
        return MultiLabelEvaluation(
            classes=list(predictor.classes), paths=[p for p, ok in zip(paths, good) if ok],
            targets=multi_label_targets([item.label for item, ok in zip(items, good) if ok],
                                        predictor.classes),
            probabilities=outputs.probabilities[good], thresholds=predictor.thresholds,
            split=split, skipped=skipped, info=predictor.info,
            outlier_scores=outputs.outlier[good] if outputs.outlier is not None else None,
            threshold=predictor.threshold, model=predictor,
            **_strangers(predictor, unknown, batch_size, show_progress))
    index = {label: i for i, label in enumerate(predictor.classes)}
    return Evaluation(
        classes=list(predictor.classes),
        paths=[p for p, ok in zip(paths, good) if ok],
        targets=np.array([index[item.label] for item, ok in zip(items, good) if ok]),
        probabilities=outputs.probabilities[good],
        split=split,
        skipped=skipped,  # unreadable when the data was read, or now
        info=predictor.info,
        outlier_scores=outputs.outlier[good] if outputs.outlier is not None else None,
        threshold=predictor.threshold,
        model=predictor,
        **_strangers(predictor, unknown, batch_size, show_progress),
    )


def _strangers(predictor: Predictor, unknown: Any, batch_size: int, show_progress: bool
               ) -> dict[str, Any]:
    if unknown is None:
        return {}
    if not predictor.has_detector:
        raise DataError("This model file has no detector for unknown pictures (made before "
                        "imgclf 0.2): train it again to evaluate unknown pictures.")
    if isinstance(unknown, (str, os.PathLike)):
        folder = Path(unknown)
        if not folder.is_dir():
            raise DataError(f"No such folder of unknown pictures: {folder}")
        paths = find_images(folder)
    else:
        paths = [Path(p) for p in unknown]
    if not paths:
        raise DataError(f"No pictures in {unknown}: nothing to test the unknown answer on.")
    outputs = predictor.outputs(paths, batch_size=batch_size, show_progress=show_progress,
                                description="Evaluating unknown pictures")
    if not outputs.ok.any():
        raise DataError(f"No picture in {unknown} could be read.")
    return {"strangers": [p for p, ok in zip(paths, outputs.ok) if ok],
            "stranger_scores": outputs.outlier[outputs.ok]}


def _picture(path: Path):
    """A top loss's picture, small enough to draw, or None when it cannot be read now."""
    try:
        return load_image(path, max_side=320)
    except ImageError:
        return None


def _as_predictor(model: Any) -> Predictor:
    if isinstance(model, Predictor):
        return model
    if hasattr(model, "predictor"):
        return model.predictor()
    return Predictor.load(model)
