"""What the labels of a data set are: one class per picture, or several (multi-label), and
whether they can train a classifier."""

from __future__ import annotations

import warnings
from collections import Counter

from imgclf.data.sources import Item
from imgclf.errors import DataError, ImgclfWarning

# Classes (labels) with fewer training pictures than this get a warning.
FEW_IMAGES = 5


def labels_of(item: Item) -> tuple[str, ...]:
    """An item's labels: its tuple (multi-label), its one class, or none."""
    if isinstance(item.label, tuple):
        return item.label
    return () if item.label is None else (item.label,)


def label_text(label: str | tuple[str, ...] | None) -> str:
    """A label as a title shows it: "ants", "car;person", or "-" for a picture with none."""
    if isinstance(label, tuple):
        return ";".join(label) or "-"
    return label or "?"


def check_classes(items: list[Item], usable: list[Item], few_images: list[str]) -> list[str]:
    """The sorted class names; raise DataError when the labels cannot train a classifier."""
    given = Counter(item.label for item in items if item.label is not None)
    kept = Counter(item.label for item in usable if item.label is not None and item.split != "test")
    lost = sorted(label for label in given if kept[label] == 0
                  and any(i.label == label and i.split != "test" for i in items))
    if lost:
        raise DataError(
            f"Class {', '.join(map(repr, lost))} has no usable pictures: every file was "
            "skipped (see the list above). Add readable photos or remove the folder.")
    classes = sorted(kept)
    if len(classes) == 0:
        raise DataError("No usable pictures: every file was skipped.")
    if len(classes) == 1:
        raise DataError(
            f"Only one class found ({classes[0]!r}, {kept[classes[0]]} pictures). A classifier "
            "needs at least two: add a folder per class next to it.")
    train_counts = Counter(item.label for item in usable if item.split == "train")
    for label in classes:
        if train_counts[label] == 0:
            raise DataError(f"Class {label!r} has validation pictures but none for training.")
    few_images[:] = [label for label in classes if train_counts[label] < FEW_IMAGES]
    if few_images:
        warnings.warn(
            f"Class(es) {', '.join(few_images)} have fewer than {FEW_IMAGES} training "
            "pictures; results will be unreliable. 20 or more per class is a good start.",
            ImgclfWarning, stacklevel=3)
    return classes


def check_labels(items: list[Item], usable: list[Item], few_images: list[str],
                 balance: bool = False) -> list[str]:
    """Multi-label data's sorted labels; DataError when they cannot train a classifier."""
    if any(not isinstance(item.label, tuple) for item in items if item.split != "test"):
        raise DataError("Some pictures have one label and others a list of labels: read "
                        "multi-label data with label_delim for every row.")
    if balance:
        raise DataError("balance draws every class equally often: it needs one label per "
                        "picture, and this data has several.")
    kept = Counter(label for item in usable if item.split != "test" for label in item.label)
    given = Counter(label for item in items if item.split != "test" for label in item.label)
    lost = sorted(set(given) - set(kept))
    if lost:
        raise DataError(
            f"Label {', '.join(map(repr, lost))} is on no usable picture: every file that "
            "carries it was skipped (see the list above). Add readable photos or drop it.")
    labels = sorted(kept)
    if not labels:
        raise DataError("No usable picture carries a label: give each row its labels, "
                        "separated by label_delim.")
    train_counts = Counter(label for item in usable if item.split == "train"
                           for label in item.label)
    missing = [label for label in labels if train_counts[label] == 0]
    if missing:
        raise DataError(f"Label(s) {', '.join(map(repr, missing))} have validation pictures "
                        "but none for training.")
    few_images[:] = [label for label in labels if train_counts[label] < FEW_IMAGES]
    if few_images:
        warnings.warn(
            f"Label(s) {', '.join(few_images)} are on fewer than {FEW_IMAGES} training "
            "pictures; their results will be unreliable. 20 or more per label is a good start.",
            ImgclfWarning, stacklevel=3)
    return labels
