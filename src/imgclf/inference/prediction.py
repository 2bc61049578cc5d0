"""What a prediction is: one picture's answer (Prediction), a batch's (Predictions), and the
one table form every output shares (``imgclf predict --json`` and ``--csv``, Ray's Parquet).

Plain data: nothing here runs a network, so the CLI, the server and Ray format answers the
same way whatever produced them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from imgclf._html import escape, percent, table
from imgclf.errors import ImageError

# The label of a picture that looks like none of the model's classes.
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Prediction:
    """One picture's result: the label, its class index and every class's probability.

    A picture that looks like none of the classes (its outlier score is above the model's
    threshold) has ``unknown=True`` and the label "unknown"; ``closest`` and ``index`` still
    name the most probable class.

    Example:
        >>> prediction = Predictor.load("ants.imgclf").predict("ant.jpg")
        >>> prediction.label, prediction.index, round(prediction.probability, 3)
        ('ants', 0, 0.998)
        >>> Predictor.load("ants.imgclf").predict("car.jpg")
        Prediction(label='unknown', index=1, ..., unknown=True, outlier_score=0.41)
    """

    label: str
    index: int  # of the closest (most probable) class, also when the picture is unknown
    probabilities: dict[str, float]
    unknown: bool = False
    # how strange the picture is to the model (higher = stranger); None: no detector
    outlier_score: float | None = None
    # a multi-label model's answer: every label whose probability reaches its threshold
    # (label is them joined by ";", "" for none); None for a single-label model
    labels: tuple[str, ...] | None = None

    def __iter__(self):
        """label, index, probabilities (a list in class order): unpacks like fastai's predict
        tuple, so ``probabilities[index]`` is the label's probability.

        Example:
            >>> label, index, probabilities = model.predict("ant.jpg")
            >>> probabilities[index]
            0.998
        """
        first = list(self.labels) if self.labels is not None else self.label
        return iter((first, self.index, list(self.probabilities.values())))

    @property
    def closest(self) -> str:
        """The most probable class, whether or not the picture is unknown."""
        return max(self.probabilities, key=self.probabilities.__getitem__)

    @property
    def probability(self) -> float:
        """The probability of the closest class."""
        return self.probabilities[self.closest]

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The k most likely classes with their probabilities, best first."""
        return sorted(self.probabilities.items(), key=lambda pair: -pair[1])[:k]

    def to_dict(self, top_k: int = 3) -> dict[str, Any]:
        """The one serialization of a prediction: the HTTP API's answer, each line of
        ``imgclf predict --json`` (after the file's "path"), and, flattened, each row of
        ``--csv`` and of Ray's table (``table_row``).

        Example:
            >>> model.predict("ant.jpg").to_dict(top_k=1)
            {'label': 'ants', 'index': 0, 'closest': 'ants', 'probability': 0.998,
             'unknown': False, 'outlier_score': 0.21,
             'top': [{'label': 'ants', 'probability': 0.998}],
             'probabilities': {'ants': 0.998, 'bees': 0.002}}
        """
        answer = {"label": self.label, "index": self.index, "closest": self.closest,
                  "probability": self.probability, "unknown": self.unknown,
                  "outlier_score": self.outlier_score,
                  "top": [{"label": label, "probability": probability}
                          for label, probability in self.top(top_k)],
                  "probabilities": self.probabilities}
        if self.labels is not None:  # multi-label: the labels given, in class order
            answer["labels"] = list(self.labels)
        return answer

    def describe(self, top_k: int = 1) -> str:
        """For people: "ants 98.0%", or "unknown (closest: ants 51.0%)"; a multi-label
        answer: "car 97.0%, person 88.0%", or "no label (closest: bus 31.0%)"."""
        guesses = ", ".join(f"{label} {p:.1%}" for label, p in self.top(top_k))
        if self.labels is not None and not self.unknown:
            given = ", ".join(f"{label} {self.probabilities[label]:.1%}" for label in self.labels)
            return given or f"no label (closest: {guesses})"
        return f"{UNKNOWN} (closest: {guesses})" if self.unknown else guesses

    def _repr_html_(self) -> str:
        """In a notebook: the answer, then the likeliest classes as bars."""
        bars = "".join(
            f"<tr><td>{escape(label)}</td><td><div style='background:#4c8ed9;height:.9em;"
            f"width:{max(1, round(150 * p))}px'></div></td><td>{p:.1%}</td></tr>"
            for label, p in self.top(5))
        score = ("" if self.outlier_score is None else
                 f" <span style='color:#57606a'>(outlier score {self.outlier_score:.3f})</span>")
        shown = (", ".join(self.labels) or "no label") if self.labels is not None else self.label
        answer = (f"<b style='color:#cf222e'>{UNKNOWN}</b>: like none of the classes; closest "
                  f"{escape(self.closest)}" if self.unknown else f"<b>{escape(shown)}</b>")
        return f"<div>{answer}{score}<table>{bars}</table></div>"


class Predictions(list):
    """Predictor.predict_batch's answers (a Prediction, or the ImageError of a picture that
    could not be read, per picture, in order): a list that shows itself as a table in a
    notebook."""

    def __init__(self, answers: Sequence[Prediction | ImageError], sources: Sequence[Any]):
        super().__init__(answers)
        # names, not the pictures: a list of answers keeps no picture alive
        self.names = [source_name(source)
                      if isinstance(source, (str, os.PathLike, bytes, bytearray))
                      else "picture" for source in sources]

    def _repr_html_(self) -> str:
        rows = []
        for name, answer in zip(self.names, self):
            if isinstance(answer, ImageError):
                rows.append((name, "unreadable", answer.reason, ""))
            else:
                score = answer.outlier_score
                rows.append((name, answer.label, percent(answer.probability),
                             "" if score is None else f"{score:.3f}"))
        readable = [a for a in self if not isinstance(a, ImageError)]
        unknown = sum(a.unknown for a in readable)
        return (f"<div>{len(self)} pictures: {len(readable)} predicted ({unknown} unknown), "
                f"{len(self) - len(readable)} unreadable</div>"
                + table(("picture", "label", "probability", "outlier score"), rows,
                        numbers=(2, 3)))


def source_name(source: Any) -> str:
    """A source as an error names it: a path, or "<N bytes>"."""
    return f"<{len(source)} bytes>" if isinstance(source, (bytes, bytearray)) else str(source)


_FIXED = ("path", "label", "index", "probability", "unknown", "outlier_score")


def class_columns(classes: Sequence[str]) -> list[str]:
    """Each class's probability column: the class name, or "probability_<class>" for every
    class when one is named like a fixed column ("label", "unknown", ...)."""
    clash = any(name in (*_FIXED, "error") for name in classes)
    return [f"probability_{name}" if clash else name for name in classes]


def table_columns(classes: Sequence[str]) -> list[str]:
    """The columns of a predictions table: one per class between the fixed ones."""
    return [*_FIXED, *class_columns(classes), "error"]


def record(path: Any, result: Prediction | ImageError, *, top_k: int = 3) -> dict[str, Any]:
    """One file's prediction as ``imgclf predict --json`` prints it: its path, then
    Prediction.to_dict; a file that could not be read is its path and the error."""
    if isinstance(result, ImageError):
        return {"path": str(path), "error": result.reason}
    return {"path": str(path), **result.to_dict(top_k)}


def table_row(classes: Sequence[str], path: Any, result: Prediction | ImageError
              ) -> dict[str, Any]:
    """One file's row of a predictions table (``imgclf predict --csv``, Ray's Parquet): the
    record's scalar fields, each class's probability, and the error of a file that could not
    be read (the other cells empty)."""
    row = dict.fromkeys(table_columns(classes))
    values = record(path, result)
    row.update({name: values.get(name) for name in (*_FIXED, "error")})
    if "probabilities" in values:
        row.update(zip(class_columns(classes), values["probabilities"].values()))
    return row
