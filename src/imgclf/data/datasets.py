"""Pictures as arrays: the Dataset and collate function every DataLoader in imgclf uses.

Training batches (imagedata.py) and the forward loop (inference/loop.py) both read pictures through
``ImageFiles``, so a bad file is skipped the same way everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from imgclf._files import save_array
from imgclf.data.decoding import ImageSource, load_image, to_rgb
from imgclf.errors import ImageError


def default_workers() -> int:
    """DataLoader worker processes for training: one core is left for the network itself,
    and on 2 cores or fewer none (the pictures are read in the network's process, between
    its steps): efficientnet_lite0 with its early layers frozen, hymenoptera, 176 px crops,
    48.4 training pictures a second against 40.6 with a worker, 28.2 against 27.9 at 224 px;
    blood-cells 43.7 against 42.1 and 27.1 against 27.3 (2-core CPU, one run)."""
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(4, cores - 1)


def local_processes() -> int:
    """How many training processes share this machine (1 alone)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def inference_workers() -> int:
    """DataLoader worker processes for forward passes alone (embeddings, evaluate, predict):
    default_workers(), none on 2 cores or fewer, where the network's threads already use
    every core and a worker only takes one from them (hymenoptera's 153 validation photos at
    288 px through onnxruntime: 2.2 s read in the network's process against 2.8-3.0 s with a
    worker, 1.4 against 1.9-2.3 s from stored views; bench/data_wait.py)."""
    return default_workers()


@dataclass(frozen=True)
class StoredViews:
    """Where the deterministic square view of each picture is kept, so that a picture is
    decoded once in a run: verification stores the view at the size the run will test at,
    and every later reader of that view (validation each epoch, embeddings, evaluate) loads
    its pixels instead of decoding and resizing the original again.

    A view is the uint8 picture ``square`` gives (the part of an evaluation transform before
    ``finish`` turns it into a normalised array), so a stored view gives exactly the array
    the original would. ``paths[i]`` is picture i's file (None: not stored, decode it).
    """

    paths: Sequence[Path | None]
    square: Callable  # upright RGB picture -> the square picture the network sees
    finish: Callable  # square picture (PIL or HxWx3 uint8 array) -> normalised array

    def read(self, index: int, source: ImageSource) -> Any:
        """Picture `index`'s normalised array: from its stored view, or decoded from `source`
        (a large JPEG at reduced scale, as every reader decodes it) and its view stored for
        the next reader."""
        path = self.paths[index]
        view = read_view(path) if path is not None else None
        if view is None:
            view = self.square(load_image(source, least=getattr(self.square, "decode_size",
                                                                 None)))
            if path is not None:
                try:
                    save_view(path, np.asarray(view))
                except OSError:
                    pass  # a cache: a full or read-only disk costs the next reader a decode
        return self.finish(view)


def read_view(path: Path) -> np.ndarray | None:
    """A stored view's pixels, or None when there is none (or it cannot be read)."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None


def save_view(path: Path, view: np.ndarray) -> None:
    """Store a view atomically: a reader never sees half of one."""
    save_array(path, np.ascontiguousarray(view, dtype=np.uint8))


class ImageFiles:
    """A map-style Dataset over pictures: item -> (picture, target, index), or an ImageError;
    the picture is what the transform gives (a float32 numpy array from the evaluation and
    training pipelines alike).

    Pictures are files (paths), encoded bytes or PIL images. One that cannot be read yields
    its ImageError instead of raising, so one bad photo in a folder of hundreds costs one
    skipped item, not the whole run; ``collate`` drops it.

    views: stored square views of the pictures (evaluation only: a random transform needs
    the whole picture); ``transform`` is then not used.
    """

    def __init__(self, pictures: Sequence[ImageSource | Any], transform: Callable,
                 targets: Sequence[int] | None = None, *, views: StoredViews | None = None):
        self.pictures = [Path(p) if isinstance(p, (str, os.PathLike)) else p for p in pictures]
        self.transform = transform
        self.targets = list(targets) if targets is not None else [-1] * len(self.pictures)
        self.views = views
        # When set, item i's random augmentation is drawn from a generator seeded by
        # (seed, i): the same picture whatever process, worker or resumed run reads it.
        self.seed: int | None = None

    @property
    def paths(self) -> list[Path]:
        return self.pictures

    def __len__(self) -> int:
        return len(self.pictures)

    def __getitem__(self, index: int):
        source = self.pictures[index]
        try:
            if self.views is not None:
                return self.views.read(index, source), self.targets[index], index
            picture = to_rgb(source) if _is_pil(source) else load_image(
                source, least=getattr(self.transform, "decode_size", None))
        except ImageError as error:
            error.index = index  # bytes have no name: the position says whose it is
            return error
        if self.seed is None:
            return self.transform(picture), self.targets[index], index
        import torch

        with torch.random.fork_rng(devices=[]):  # leaves the caller's random state alone
            torch.manual_seed(self.seed * 1_000_003 + index)
            return self.transform(picture), self.targets[index], index


def _is_pil(value: Any) -> bool:
    from PIL import Image

    return isinstance(value, Image.Image)


def collate(items: list, *, tensors: bool = True):
    """Stack good items into a batch; bad ones travel alongside as a list of ImageErrors.

    tensors: torch tensors (what a DataLoader and a torch network take); False keeps numpy
    arrays of numpy items (the evaluation pipeline's), for onnxruntime, without torch.
    """
    good = [item for item in items if not isinstance(item, ImageError)]
    errors = [item for item in items if isinstance(item, ImageError)]
    if not good:
        return None, None, None, errors
    pictures = [item[0] for item in good]
    targets = np.array([item[1] for item in good])  # class indices, or multi-label 0/1 rows
    targets = targets.astype(np.float32 if targets.ndim > 1 else np.int64)
    indices = np.array([item[2] for item in good], dtype=np.int64)
    arrays = isinstance(pictures[0], np.ndarray)
    if arrays and not tensors:
        return np.stack(pictures), targets, indices, errors
    import torch

    images = torch.from_numpy(np.stack(pictures)) if arrays else torch.stack(pictures)
    return images, torch.from_numpy(targets), torch.from_numpy(indices), errors
