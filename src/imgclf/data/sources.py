"""Where labelled pictures come from: class folders, CSV files, DataFrames, file names; and
the seeded, stratified split.

Each ``items_from_*`` returns a list of ``Item`` (file, label, split); ``split_items`` gives
every item without a split one. ``ImageData.from_*`` (data.py) are one-line wrappers over these.
``expand_paths``: the files and folders given to a command, as picture files.
"""

from __future__ import annotations

import csv
import os
import random
import re
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from imgclf.config import DataConfig
from imgclf.errors import DataError, ImgclfError, ImgclfWarning

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".jfif", ".ppm"}
)
SPLIT_FOLDERS = {
    "train": "train", "training": "train",
    "valid": "valid", "val": "valid", "validation": "valid", "dev": "valid",
    "test": "test", "testing": "test",
}
SPLITS = ("train", "valid", "test")
# A class folder of this name holds pictures of none of the classes: the unknown detector is
# tuned on them and they are reported apart; they are never a class.
UNKNOWN_FOLDER = "_unknown"
# Where cleaning moves the pictures it removes (fixes.py): never read as data.
REMOVED_FOLDER = "_removed"
# The one pool split_items draws multi-label pictures from (no class is named so: it is a
# tuple's stand-in, never a label)
MULTI_LABEL = "\0multi-label"


@dataclass(frozen=True)
class Item:
    """One labelled picture: its file, class label, and split ("train", "valid", "test" or None).

    Multi-label data (a CSV read with ``label_delim``) gives each picture a tuple of labels,
    sorted, possibly empty (a picture with none of them: negative for every one).
    """

    path: Path
    label: str | tuple[str, ...] | None
    split: str | None = None


# --- sources --------------------------------------------------------------------------------


def find_images(folder: str | os.PathLike, *, recursive: bool = True) -> list[Path]:
    """Image files under a folder by suffix, sorted; hidden files and folders, and pictures
    removed by cleaning (``_removed/``), left out.

    Whatever else carries an image name (a broken symbolic link, a link loop, a device or a
    pipe) is included too, so that reading it skips it with a reason instead of its vanishing
    without a word.
    """
    root = Path(folder)
    pattern = "**/*" if recursive else "*"
    return sorted(
        p for p in root.glob(pattern)
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()
        and not any(part.startswith(".") or part == REMOVED_FOLDER
                    for part in p.relative_to(root).parts)
    )


def items_from_folder(root: str | os.PathLike) -> list[Item]:
    """Items from class folders: the label is the parent folder's name.

    ``root/train/<class>/…`` with ``root/valid/`` (or ``val/``) and optionally ``root/test/``
    gives the split by folder; otherwise every picture's split is left to ``split_items``.

    Example:
        >>> items = items_from_folder("hymenoptera")   # train/ants, train/bees, val/ants, ...
    """
    root = _existing_folder(root)
    children = {p.name.lower(): p for p in root.iterdir()
                if p.is_dir() and p.name != REMOVED_FOLDER}
    split_dirs = {SPLIT_FOLDERS[name]: path for name, path in children.items()
                  if name in SPLIT_FOLDERS}
    _warn_empty_folders([folder for split in split_dirs.values() for folder in
                         split.iterdir() if folder.is_dir()] if "train" in split_dirs else
                        list(children.values()))
    if "train" in split_dirs:
        items = []
        for split, folder in sorted(split_dirs.items()):
            for path in find_images(folder):
                label = path.parent.name if path.parent != folder else None
                if label is None and split != "test":
                    raise DataError(
                        f"{path} lies directly in {folder}: put it in a class folder, "
                        f"e.g. {folder}/<class name>/{path.name}.")
                items.append(Item(path, label, split))
    else:
        items = [Item(path, path.parent.name) for path in find_images(root)]
        loose = [item.path for item in items if item.path.parent == root]
        if loose:
            raise DataError(
                f"{len(loose)} picture(s) lie directly in {root} (e.g. {loose[0].name}). Put "
                f"one folder per class: {root}/cats/1.jpg, {root}/dogs/1.jpg, ... or read "
                f"labels from the file names: imgclf train {root} --label-pattern "
                f"'^(.+)_\\d+\\.\\w+$' (great_pyrenees_173.jpg -> great_pyrenees), or "
                f"ImageData.from_filenames in Python.")
    if not items:
        raise DataError(
            f"No images found in {root}. Expected one folder per class, e.g. "
            f"{root}/cats/1.jpg and {root}/dogs/1.jpg ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    return items


def _warn_empty_folders(folders: list[Path]) -> None:
    empty = sorted(str(folder) for folder in folders
                   if not folder.name.startswith((".", REMOVED_FOLDER)) and not find_images(folder))
    if empty:
        warnings.warn(f"{len(empty)} folder(s) hold no pictures and give no class: "
                      f"{', '.join(empty[:5])}{', ...' if len(empty) > 5 else ''}",
                      ImgclfWarning, stacklevel=3)


def items_from_filenames(folder: str | os.PathLike,
                         pattern: str = r"^(.+)_\d+\.\w+$") -> list[Item]:
    """Items labelled by a regular expression on the file name (first group is the label).

    The default reads Oxford-Pets style names: ``great_pyrenees_173.jpg`` -> ``great_pyrenees``.
    Files whose name does not match raise a DataError listing a few of them.
    """
    folder = _existing_folder(folder)
    regex = re.compile(pattern)
    items, unmatched = [], []
    for path in find_images(folder):
        match = regex.match(path.name)
        if match and match.group(1):
            items.append(Item(path, match.group(1)))
        else:
            unmatched.append(path.name)
    if unmatched:
        raise DataError(f"{len(unmatched)} file name(s) do not match {pattern!r}, e.g. "
                        f"{', '.join(unmatched[:3])}. Adjust the pattern.")
    if not items:
        raise DataError(f"No images found in {folder}.")
    return items


def items_from_csv(csv_file: str | os.PathLike, *, root: str | os.PathLike | None = None,
                   path_column: str = "path", label_column: str = "label",
                   split_column: str | None = None, label_delim: str | None = None
                   ) -> list[Item]:
    """Items from a CSV file with a path and a label column (paths relative to ``root``).

    Args:
        root: folder the paths are relative to; default: the CSV file's folder.
        split_column: optional column giving the split: train/valid/val/test, or a boolean
            "is this validation" column such as fastai's ``is_valid``.
        label_delim: the label column holds several labels separated by this (" " or ";",
            as fastai's ``label_delim``): multi-label data. An empty cell is a picture with
            none of the labels.

    Example:
        >>> items_from_csv("streets.csv", label_delim=" ")[0].label
        ('bus', 'car', 'person')
    """
    csv_file = Path(csv_file)
    if not csv_file.is_file():
        raise DataError(f"No such CSV file: {csv_file}")
    with open(csv_file, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    return items_from_rows(rows, root=root if root is not None else csv_file.parent,
                           path_column=path_column, label_column=label_column,
                           split_column=split_column, source=str(csv_file),
                           label_delim=label_delim)


def items_from_dataframe(frame: Any, *, root: str | os.PathLike = ".", path_column: str = "path",
                         label_column: str = "label", split_column: str | None = None,
                         label_delim: str | None = None) -> list[Item]:
    """Items from a pandas DataFrame, with the same columns as ``items_from_csv``."""
    rows = frame.to_dict("records")
    return items_from_rows(rows, root=root, path_column=path_column, label_column=label_column,
                           split_column=split_column, source="the DataFrame",
                           label_delim=label_delim)


def items_from_rows(rows: Sequence[dict], *, root: str | os.PathLike, path_column: str,
                    label_column: str, split_column: str | None, source: str,
                    label_delim: str | None = None) -> list[Item]:
    if not rows:
        raise DataError(f"{source} has no rows.")
    columns = set(rows[0])
    for column in (path_column, label_column, split_column):
        if column is not None and column not in columns:
            raise DataError(f"{source} has no column {column!r}; its columns are "
                            f"{', '.join(sorted(map(str, columns)))}.")
    if label_delim is not None and not label_delim:
        raise DataError("label_delim must be a separator such as ' ' or ';', not empty.")
    root = Path(root)
    items = []
    for row in rows:
        split = _split_value(row[split_column], source) if split_column else None
        label = row[label_column]
        text = "" if _missing(label) else str(label).strip()
        if label_delim is not None:
            label = labels_from(text, label_delim)
        else:
            label = text or None
        items.append(Item(root / str(row[path_column]), label, split))
    return items


def _missing(value: Any) -> bool:
    """An empty cell: None, or a DataFrame's NaN or pandas.NA."""
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN is the one value unequal to itself
    except TypeError:  # pandas.NA: its comparisons are NA, which has no truth value
        return True


def labels_from(text: str, label_delim: str) -> tuple[str, ...]:
    """A multi-label cell's labels: split on label_delim, stripped, sorted, each once
    ("car person car" -> ("car", "person")); an empty cell has none. A space splits on any
    run of spaces; another delimiter (a tab, ";") only on itself, so labels may hold spaces."""
    parts = text.split(" ") if label_delim == " " else text.split(label_delim)
    return tuple(sorted({part.strip() for part in parts if part.strip()}))


def _split_value(value: Any, source: str) -> str:
    text = str(value).strip().lower()
    if text in SPLIT_FOLDERS:
        return SPLIT_FOLDERS[text]
    if text in ("1", "true", "yes"):
        return "valid"
    if text in ("0", "false", "no", ""):
        return "train"
    raise DataError(f"{source}: split value {value!r} is not train/valid/test or true/false.")


def _existing_folder(folder: str | os.PathLike) -> Path:
    path = Path(folder).expanduser()
    if not path.exists():
        raise DataError(f"No such folder: {path}")
    if not path.is_dir():
        raise DataError(f"{path} is a file; give the folder that holds the class folders.")
    return path


# --- splitting ------------------------------------------------------------------------------


def split_items(items: Iterable[Item], valid_fraction: float = DataConfig.valid_fraction,
                seed: int = DataConfig.seed) -> list[Item]:
    """Give every item without a split one, at random but stratified and reproducible.

    Each class with at least two unsplit pictures puts round(valid_fraction * n) of them
    (at least one) into validation, drawn with its own seeded generator, so adding a class
    does not move pictures of the others. Multi-label pictures (tuples of labels) are drawn
    from one pool: most combinations of labels are too rare to stratify by; a label the draw
    left with validation pictures only gets one back into training. Splits given by folders
    or columns are kept.
    """
    items = list(items)
    by_class: dict[Any, list[int]] = defaultdict(list)
    for position, item in enumerate(items):
        if item.split is None:
            by_class[MULTI_LABEL if isinstance(item.label, tuple) else item.label].append(
                position)
    chosen: set[int] = set()
    for label in sorted(by_class, key=str):
        positions = by_class[label]
        if len(positions) < 2 or valid_fraction <= 0:
            continue
        count = min(len(positions) - 1, max(1, round(valid_fraction * len(positions))))
        # one generator per class: adding a class leaves the other classes' splits as they were
        generator = random.Random(f"{seed}/{label}")
        chosen.update(generator.sample(positions, count))
    _keep_every_label_in_training(items, by_class.get(MULTI_LABEL, ()), chosen)
    return [item if item.split is not None else
            replace(item, split="valid" if position in chosen else "train")
            for position, item in enumerate(items)]


def _keep_every_label_in_training(items: list[Item], pool, chosen: set[int]) -> None:
    """Move back to training the first drawn multi-label picture of each label that the
    draw left with validation pictures only (a rare label must be learnt before it is
    judged); the split stays seeded."""
    trained = {label for position, item in enumerate(items) for label in
               (item.label if isinstance(item.label, tuple) else (item.label,))
               if item.split == "train" or (item.split is None and position not in chosen)}
    for position in sorted(chosen.intersection(pool)):
        missing = set(items[position].label) - trained
        if missing:
            chosen.discard(position)
            trained.update(items[position].label)


def expand_paths(arguments: list[str]) -> list[Path]:
    """Files as given, folders expanded to the images inside; a wrong path is an error."""
    paths: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = find_images(path)
            if not found:
                raise ImgclfError(f"No image files in folder {path}.")
            paths.extend(found)
        elif path.exists() or path.is_symlink():  # a broken link or a device: skipped,
            paths.append(path)                      # saying why, when it is read
        else:
            raise ImgclfError(f"No such file or folder: {path}")
    return paths
