"""Labelled pictures, verified and split, ready to batch for a backbone.

Two layers, as in fastai: ``ImageData.from_folder(...)`` is one line; underneath it are public
pieces a user can call directly (sources.py): ``items_from_folder`` / ``items_from_csv`` /
``items_from_filenames`` -> ``split_items`` -> ``ImageData.from_items``.
"""

from __future__ import annotations

import os
import random
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgclf._html import escape
from imgclf._html import table as html_table
from imgclf._progress import console as default_console, data_summary_tables
from imgclf.backbones import input_config_for
from imgclf.config import DEFAULT_BACKBONE, AugmentConfig, DataConfig, InputConfig, probe_image_size
from imgclf.data.datasets import ImageFiles, StoredViews, collate, default_workers, local_processes
from imgclf.data.labels import check_classes, check_labels, label_text, labels_of
from imgclf.data.sources import (SPLITS, UNKNOWN_FOLDER, Item, find_images, items_from_csv,
                                 items_from_dataframe, items_from_filenames, items_from_folder,
                                 split_items)
from imgclf.data.transforms import eval_parts, eval_transform, train_transform
from imgclf.data.verification import verify_files, view_folder, view_path
from imgclf.errors import DataError, ImageError, ImgclfWarning
from imgclf.plots import plot_pictures

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

# Resized copies keep this multiple of the input size as their shorter side, so random crops
# down to min_scale still downsample rather than blow up.
COPY_SCALE = 2.0


# --- datasets -------------------------------------------------------------------------------


@dataclass
class DataReport:
    """What verification found; every list holds (path, reason) or (path, path) pairs."""

    skipped: list[tuple[Path, str]] = field(default_factory=list)
    suspicious: list[tuple[Path, str]] = field(default_factory=list)
    # identical files in training and in validation/test: the score would be inflated
    leakage: list[tuple[Path, Path]] = field(default_factory=list)
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)
    few_images: list[str] = field(default_factory=list)
    # the split each skipped picture had been given: evaluate counts a split's skipped files
    skipped_split: dict[Path, str | None] = field(default_factory=dict)


class ImageData:
    """Labelled pictures split into train / valid (/ test), ready to batch for a backbone.

    Example:
        >>> data = ImageData.from_folder("hymenoptera", valid_fraction=0.2, seed=42)
        >>> data.classes
        ['ants', 'bees']
        >>> data.show_batch(n=8).savefig("batch.png")
    """

    def __init__(self, items: Sequence[Item], *, classes: Sequence[str], input: InputConfig,
                 config: DataConfig = DataConfig(), augment: AugmentConfig | None = AugmentConfig(),
                 backbone: str = DEFAULT_BACKBONE, report: DataReport | None = None,
                 copies: dict[Path, Path] | None = None, hashes: dict[Path, str] | None = None,
                 fixed_size: bool = False, negatives: Sequence[Path] = (),
                 weights: str | None = None):
        self.classes = list(classes)
        self.class_index = {label: i for i, label in enumerate(self.classes)}
        # several labels per picture (a CSV read with label_delim): each item's label is a
        # tuple, the network's outputs are independent (sigmoid) probabilities
        self.multi_label = any(isinstance(item.label, tuple) for item in items)
        # the input the network sees: size, normalisation, resize method (the one home)
        self.input = input
        # the user chose input.image_size: training modes keep it instead of their own
        self.fixed_size = fixed_size
        # pictures of none of the classes (an _unknown folder): they tune the unknown detector
        self.negatives = list(negatives)
        self.config = config
        self.augment = augment
        self.backbone = backbone
        # a weights file for the backbone instead of its ImageNet ones (None: those)
        self.weights = weights
        self.report = report or DataReport()
        self.copies = copies or {}
        # content hash of every verified file: the key of cached copies and embeddings
        self.hashes = hashes or {}
        self.items = {split: [item for item in items if item.split == split] for split in SPLITS}

    # --- one-liners ---

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, **options) -> ImageData:
        """Class folders (``folder/<class>/*.jpg``) or ``train/`` + ``valid/`` folders.

        Options are those of ``from_items``: image_size, resize, augment, backbone, weights,
        input, verbose, and the DataConfig fields (valid_fraction, seed, batch_size, balance,
        num_workers, cache).
        """
        return cls.from_items(items_from_folder(folder), **options)

    @classmethod
    def from_csv(cls, csv_file: str | os.PathLike, *, root: str | os.PathLike | None = None,
                 path_column: str = "path", label_column: str = "label",
                 split_column: str | None = None, label_delim: str | None = None,
                 **options) -> ImageData:
        """A CSV file of paths and labels (see ``items_from_csv``).

        label_delim: the label column holds several labels separated by this (" " or ";"):
        multi-label data, trained with one independent output per label.

        Example:
            >>> data = ImageData.from_csv("streets.csv", label_delim=" ")
            >>> data.multi_label, data.classes
            (True, ['bus', 'car', 'person'])
        """
        label_delim = _label_delim(label_delim, options)
        items = items_from_csv(csv_file, root=root, path_column=path_column,
                               label_column=label_column, split_column=split_column,
                               label_delim=label_delim)
        return cls.from_items(items, **options)

    @classmethod
    def from_dataframe(cls, frame: Any, *, root: str | os.PathLike = ".", path_column: str = "path",
                       label_column: str = "label", split_column: str | None = None,
                       label_delim: str | None = None, **options) -> ImageData:
        """A pandas DataFrame of paths and labels (see ``items_from_dataframe``)."""
        label_delim = _label_delim(label_delim, options)
        items = items_from_dataframe(frame, root=root, path_column=path_column,
                                     label_column=label_column, split_column=split_column,
                                     label_delim=label_delim)
        return cls.from_items(items, **options)

    @classmethod
    def from_filenames(cls, folder: str | os.PathLike, pattern: str = r"^(.+)_\d+\.\w+$",
                       **options) -> ImageData:
        """Labels from file names by regular expression (``great_pyrenees_173.jpg``)."""
        return cls.from_items(items_from_filenames(folder, pattern), **options)

    @classmethod
    def from_items(cls, items: Iterable[Item], *, image_size: int | None = None,
                   resize: str | None = None, augment: AugmentConfig | bool = True,
                   backbone: str = DEFAULT_BACKBONE, config: DataConfig | None = None,
                   unknown: str | os.PathLike | None = None, verbose: bool = True,
                   weights: str | os.PathLike | None = None, input: InputConfig | None = None,
                   **options) -> ImageData:
        """Split, verify every file once, check the classes, and build the dataset.

        Args:
            image_size: side of the square the network sees; default: the backbone's (and
                probe and auto modes choose a larger one, see ``train``).
            resize: "crop" (default), "squish" or "pad" (InputConfig.resize).
            augment: True for the default AugmentConfig, False for none, or an AugmentConfig.
            config: a DataConfig; or give its fields as keywords (valid_fraction=0.2, seed=42,
                batch_size=16, balance, num_workers, cache): DataConfig holds the defaults.
            unknown: a folder of pictures of none of the classes (optional; a class folder
                named ``_unknown`` counts too): the unknown detector is tuned on them.
            weights: a ``.safetensors`` or ``.pth`` file of the backbone's weights, for a
                backbone whose ImageNet weights are not on this computer (or your own).
            input: the input settings to start from when they are known (a model's,
                ``Predictor.input``); default: the backbone's, from timm, whose import takes
                seconds.

        Bad files are skipped and listed; an empty dataset, a single class or a class left
        without usable pictures raise DataError saying what to do.
        """
        config = replace(config or DataConfig(), **options)
        if augment is True:
            augment = AugmentConfig()
        input = input or input_config_for(backbone)
        if image_size is not None:
            input = replace(input, image_size=int(image_size))
        if resize is not None:
            input = replace(input, resize=resize)
        items = list(items)
        is_negative = [item.label == UNKNOWN_FOLDER or UNKNOWN_FOLDER in item.path.parts[:-1]
                       for item in items]
        negatives = [item.path for item, negative in zip(items, is_negative) if negative]
        if unknown is not None:
            negatives += find_images(_folder_of_negatives(unknown))
        items = [item for item, negative in zip(items, is_negative) if not negative]
        presplit = sum(item.split is not None for item in items)
        items = split_items(items, config.valid_fraction, config.seed)
        if not items:
            raise DataError("No images given.")
        _say_where_the_split_comes_from(items, presplit, config.valid_fraction)
        copy_side = round(input.image_size * COPY_SCALE) if config.cache else None
        paths = [item.path for item in items]
        # only training pictures are read from copies (see ImageData.source); every picture
        # leaves its square view at the size the default modes test at (auto and probe:
        # plan.data_for), so that the run reads no original a second time
        tested = input if image_size is not None else replace(
            input, image_size=probe_image_size(input.image_size))
        verdicts = verify_files(paths, copy_side=copy_side, show_progress=verbose,
                                copy=[item.split == "train" for item in items],
                                view=(view_folder(tested), eval_parts(tested)[0])
                                if config.cache else None)

        report = DataReport()
        usable, copies, hashes, first_seen = [], {}, {}, {}
        for item, verdict in zip(items, verdicts):
            if not verdict.ok:
                report.skipped.append((item.path, verdict.error or "unreadable"))
                report.skipped_split[item.path] = item.split
                continue
            if verdict.suspicious:
                report.suspicious.append((item.path, verdict.suspicious))
            earlier = first_seen.get(verdict.sha256)
            if earlier is not None:
                pair = (earlier.path, item.path)
                leaked = {earlier.split, item.split} & {"valid", "test"} and (
                    earlier.split != item.split)
                (report.leakage if leaked else report.duplicates).append(pair)
            else:
                first_seen[verdict.sha256] = item
            usable.append(item)
            hashes[item.path] = verdict.sha256
            if verdict.copy:
                copies[item.path] = Path(verdict.copy)
        classes = (check_labels(items, usable, report.few_images, config.balance)
                   if any(isinstance(item.label, tuple) for item in items)
                   else check_classes(items, usable, report.few_images))
        negatives = _readable(negatives, report)
        data = cls(usable, classes=classes, input=input, config=config,
                   augment=augment or None, backbone=backbone, report=report, copies=copies,
                   hashes=hashes, fixed_size=image_size is not None, negatives=negatives,
                   weights=_weights_file(weights))
        if verbose:
            data.print_summary()
        return data

    def for_backbone(self, backbone: str, *, weights: str | os.PathLike | None = None
                     ) -> ImageData:
        """The same pictures prepared for another backbone's input size, mean and std
        (weights: a file of its weights, as in ``from_items``)."""
        input = replace(input_config_for(backbone), resize=self.input.resize)
        if self.fixed_size:
            input = replace(input, image_size=self.input.image_size)
        return self._with(input=input, backbone=backbone, weights=_weights_file(weights))

    def with_image_size(self, image_size: int, *, train_size: int | None = None) -> ImageData:
        """The same pictures at another input size (the backbone's mean, std and crop kept).

        train_size: side of the random training crops, if smaller than image_size.

        Example:
            >>> data.with_image_size(288, train_size=224).input.image_size
            288
        """
        return self.with_input(replace(self.input, image_size=int(image_size),
                                       train_size=train_size))

    def with_input(self, input: InputConfig) -> ImageData:
        """The same pictures read with another input config (a model's own, say)."""
        return self._with(input=input)

    def _with(self, *, input: InputConfig | None = None, backbone: str | None = None,
              items: Sequence[Item] | None = None, weights: str | None = None) -> ImageData:
        items = [item for split in SPLITS for item in self.items[split]] if items is None else items
        return ImageData(items, classes=self.classes, input=input or self.input,
                         config=self.config, augment=self.augment,
                         backbone=backbone or self.backbone, report=self.report,
                         copies=self.copies, hashes=self.hashes, fixed_size=self.fixed_size,
                         negatives=self.negatives,
                         weights=weights if backbone else self.weights)

    def subset(self, per_class: int, *, seed: int | None = None) -> ImageData:
        """The same data with at most per_class training pictures of each class (seeded).

        Validation and test pictures stay as they are, so results remain comparable: this is
        how a learning curve is drawn.
        """
        chooser = random.Random(self.config.seed if seed is None else seed)
        by_class: dict[str | None, list[Item]] = defaultdict(list)
        for item in self.train:
            by_class[item.label].append(item)
        kept = [item for label in sorted(by_class, key=str)
                for item in chooser.sample(by_class[label], min(per_class, len(by_class[label])))]
        return self._with(items=kept + self.valid + self.test)

    # --- views ---

    @property
    def train(self) -> list[Item]:
        return self.items["train"]

    @property
    def valid(self) -> list[Item]:
        return self.items["valid"]

    @property
    def test(self) -> list[Item]:
        return self.items["test"]

    def counts(self) -> dict[str, dict[str, int]]:
        """Pictures per class and split: {"ants": {"train": 123, "valid": 70, "test": 0}, ...}.

        Multi-label data counts the pictures that carry each label."""
        table = {label: dict.fromkeys(SPLITS, 0) for label in self.classes}
        for split, items in self.items.items():
            for item in items:
                for label in labels_of(item):
                    if label in table:
                        table[label][split] += 1
        return table

    def target(self, item: Item) -> int | np.ndarray:
        """What the network learns for an item: its class index (-1 for a label that is not
        a class), or, for multi-label data, a 0/1 vector over the classes (float32)."""
        if not self.multi_label:
            return self.class_index.get(item.label, -1)
        vector = np.zeros(len(self.classes), np.float32)
        for label in labels_of(item):
            if label in self.class_index:
                vector[self.class_index[label]] = 1.0
        return vector

    def labelled(self, split: str) -> list[Item]:
        """A split's pictures that have a target: a class, or (multi-label) a tuple of labels,
        even an empty one."""
        if self.multi_label:
            return [item for item in self.items[split] if isinstance(item.label, tuple)]
        return [item for item in self.items[split] if item.label in self.class_index]

    def summary(self) -> dict[str, Any]:
        """Everything a report needs about the data, as plain JSON-ready values."""
        return {
            "classes": self.classes,
            "counts": self.counts(),
            "multi_label": self.multi_label,
            # pictures per split: with several labels each, not the sum of the counts
            "pictures": {split: len(items) for split, items in self.items.items()},
            "image_size": self.input.image_size,
            "skipped": [(str(p), reason) for p, reason in self.report.skipped],
            "suspicious": [(str(p), reason) for p, reason in self.report.suspicious],
            "leakage": [(str(a), str(b)) for a, b in self.report.leakage],
            "duplicates": [(str(a), str(b)) for a, b in self.report.duplicates],
            "few_images": self.report.few_images,
            "unknown_pictures": len(self.negatives),
        }

    def print_summary(self, console=None) -> None:
        """Counts per class, then any skipped, suspicious, leaked or duplicated files."""
        console = console or default_console()
        for table in data_summary_tables(self.summary()):
            console.print(table)

    # --- batches ---

    def dataset(self, split: str = "train", *, augment: bool | None = None) -> ImageFiles:
        """The pictures of one split as a torch Dataset (augmented for train by default)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        augment = (split == "train") if augment is None else augment
        items = self.items[split]
        targets = [self.target(item) for item in items]
        if augment:
            return ImageFiles([self.source(item) for item in items],
                              train_transform(self.input, self.augment), targets)
        return self.plain(items, targets)

    def plain(self, items: Sequence[Item], targets: Sequence[int] | None = None) -> ImageFiles:
        """These pictures as Predictor sees them, a Dataset: the originals, each through its
        stored square view where there is one (decoded and stored where there is not)."""
        return ImageFiles([item.path for item in items], eval_transform(self.input), targets,
                          views=self.stored_views(items))

    def stored_views(self, items: Sequence[Item]) -> StoredViews | None:
        """Where the square views of these pictures are kept at this data's input (see
        pictures.StoredViews); None when the data keeps no cache (DataConfig.cache)."""
        if not self.config.cache:
            return None
        folder = view_folder(self.input)
        return StoredViews([view_path(folder, self.hashes[item.path])
                            if item.path in self.hashes else None for item in items],
                           *eval_parts(self.input))

    def source(self, item: Item) -> Path:
        """The file to read for an item: training pictures come from the small cached copy;
        validation and test pictures from the original, exactly as Predictor reads them, so
        the accuracy printed while training is the accuracy evaluate() and serving get."""
        return self.copies.get(item.path, item.path) if item.split == "train" else item.path

    def loader(self, split: str = "train", *, augment: bool | None = None,
               shuffle: bool | None = None, batch_size: int | None = None,
               part: tuple[int, int] | None = None) -> torch.utils.data.DataLoader:
        """Batches of (images, targets, indices, skipped errors) for one split.

        part: (rank, processes): this process's share of each batch in data-parallel
        training: the batches one process would draw, each split in `processes` slices, so
        the run sees the same pictures in the same order (training/distributed.py).
        """
        import torch

        dataset = self.dataset(split, augment=augment)
        if len(dataset) == 0:
            raise DataError(f"The {split} split has no pictures.")
        training = split == "train"
        shuffle = training if shuffle is None else shuffle
        batch_size = batch_size or self.config.batch_size
        generator = torch.Generator().manual_seed(self.config.seed)
        sampler = None
        if training and self.config.balance:
            sampler = self._balanced_sampler(dataset.targets, generator)
            shuffle = False
        workers = default_workers() if self.config.num_workers is None else self.config.num_workers
        if part is not None and self.config.num_workers is None:  # the machine's processes
            workers //= local_processes()  # share its cores
        # a last batch of one picture breaks batch-norm statistics
        drop_last = training and len(dataset) > batch_size
        batches = {"batch_size": batch_size, "shuffle": shuffle, "sampler": sampler,
                   "drop_last": drop_last}
        if part is not None:  # the sampler draws from the same generator, reseeded per epoch
            sampler = sampler or (torch.utils.data.RandomSampler(dataset, generator=generator)
                                  if shuffle else torch.utils.data.SequentialSampler(dataset))
            batches = {"batch_sampler": _Share(torch.utils.data.BatchSampler(
                sampler, batch_size, drop_last), *part)}
        return torch.utils.data.DataLoader(
            dataset, **batches, num_workers=workers, collate_fn=collate, generator=generator,
            # training workers start afresh each epoch, to read the epoch's augmentation seed
            # (ImageFiles.seed); others live as long as the loader
            persistent_workers=workers > 0 and not training)

    def train_loader(self, **options) -> torch.utils.data.DataLoader:
        return self.loader("train", **options)

    def valid_loader(self, **options) -> torch.utils.data.DataLoader:
        return self.loader("valid", **options)

    def test_loader(self, **options) -> torch.utils.data.DataLoader:
        return self.loader("test", **options)

    def _balanced_sampler(self, targets: list[int], generator):
        import torch

        frequency = Counter(targets)
        weights = [1.0 / frequency[target] for target in targets]
        return torch.utils.data.WeightedRandomSampler(weights, num_samples=len(targets),
                                                      replacement=True, generator=generator)

    def show_batch(self, n: int = 8, *, augment: bool = True, split: str = "train",
                   seed: int | None = None) -> Figure:
        """A matplotlib figure of n pictures as the network sees them, titled with their labels.

        Example:
            >>> data.show_batch(n=8, augment=True).savefig("batch.png")
        """
        import torch

        dataset = self.dataset(split, augment=augment)
        if len(dataset) == 0:
            raise DataError(f"The {split} split has no pictures to show.")
        torch.manual_seed(self.config.seed if seed is None else seed)
        chooser = random.Random(self.config.seed if seed is None else seed)
        positions = chooser.sample(range(len(dataset)), min(n, len(dataset)))
        pictures, titles = [], []
        for position in positions:
            item = dataset[position]
            if isinstance(item, ImageError):
                continue
            pictures.append(item[0])
            titles.append(label_text(self.items[split][position].label))
        return plot_pictures(pictures, titles, mean=self.input.mean, std=self.input.std)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{split}={len(items)}" for split, items in self.items.items() if items)
        return f"ImageData({len(self.classes)} classes, {sizes}, image_size={self.input.image_size})"

    def _repr_html_(self) -> str:
        """In a notebook: pictures per class and split, then what was skipped or is odd
        (show_batch() shows the pictures)."""
        summary = self.summary()
        splits = [split for split in SPLITS if self.items.get(split)]
        rows = [(label, *(row.get(split, 0) for split in splits))
                for label, row in summary["counts"].items()]
        notes = [f"{len(summary[name])} {text}" for name, text in (
            ("skipped", "unreadable file(s) skipped"), ("suspicious", "suspicious file(s)"),
            ("leakage", "file(s) in both training and validation"),
            ("duplicates", "duplicate pair(s)")) if summary[name]]
        return (f"<div><b>{len(self.classes)} classes</b>, "
                f"{sum(len(self.items[s]) for s in splits)} pictures at "
                f"{self.input.image_size} px ({escape(self.backbone)})"
                + html_table(("class", *splits), rows, numbers=tuple(range(1, len(splits) + 1)))
                + (f"<div style='color:#9a6700'>{escape('; '.join(notes))}: print_summary() "
                   "lists them.</div>" if notes else "") + "</div>")


class _Share:
    """One process's slice of each batch a batch sampler draws (rank, rank + processes, ...)."""

    def __init__(self, batches, rank: int, processes: int):
        self.batches, self.rank, self.processes = batches, rank, processes

    def __iter__(self):
        for batch in self.batches:
            # a batch smaller than the processes: the last picture again, never an empty one
            yield batch[self.rank::self.processes] or batch[-1:]

    def __len__(self) -> int:
        return len(self.batches)


def _label_delim(label_delim: str | None, options: dict[str, Any]) -> str | None:
    """The separator of multi-label cells: given, or the DataConfig's; recorded in the options
    (DataConfig.label_delim), so the run saves it."""
    config = options.get("config")
    if label_delim is None:
        label_delim = options.get("label_delim", config.label_delim if config else None)
    if label_delim is not None:
        options["label_delim"] = label_delim
    return label_delim


def _folder_of_negatives(folder: str | os.PathLike) -> Path:
    path = Path(folder)
    if not path.is_dir():
        raise DataError(f"No such folder of unknown pictures: {path}")
    return path


def _readable(paths: list[Path], report: DataReport) -> list[Path]:
    """The pictures of none of the classes that can be read; the others are listed skipped."""
    verdicts = verify_files(paths, copy_side=None, show_progress=False) if paths else []
    for path, verdict in zip(paths, verdicts):
        if not verdict.ok:
            report.skipped.append((path, verdict.error or "unreadable"))
    return [path for path, verdict in zip(paths, verdicts) if verdict.ok]


def _say_where_the_split_comes_from(items: list[Item], presplit: int,
                                    valid_fraction: float) -> None:
    """Warn when train/ and val/ folders (or a split column) decided the split and it is far
    from valid_fraction, which then did nothing: no silent choice."""
    held_out = sum(item.split in ("valid", "test") for item in items)
    share = held_out / len(items)
    if presplit == len(items) and abs(share - valid_fraction) > 0.02:
        warnings.warn(f"The split comes with the data (train/ and val/ folders, or a split "
                      f"column): {held_out} of {len(items)} pictures ({share:.0%}) are held "
                      f"out for validation or testing; valid_fraction={valid_fraction:g} does "
                      f"not apply.", ImgclfWarning, stacklevel=4)


def _weights_file(weights: str | os.PathLike | None) -> str | None:
    """A backbone weights file's absolute path, or a DataError saying it is missing."""
    if weights is None:
        return None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise DataError(f"Weights file not found: {path}")
    return str(path.resolve())
