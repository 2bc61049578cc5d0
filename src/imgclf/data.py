"""Image files as a torch Dataset that never crashes on a bad file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

from imgclf.errors import ImageError
from imgclf.images import load_image

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".jfif", ".ppm"}
)


def find_images(folder: str | os.PathLike, *, recursive: bool = True) -> list[Path]:
    """Image files under a folder by suffix, sorted, hidden files and folders left out."""
    root = Path(folder)
    pattern = "**/*" if recursive else "*"
    return sorted(
        p for p in root.glob(pattern)
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


class ImageFiles:
    """A map-style Dataset over files: item -> (tensor, target, index), or an ImageError.

    A file that cannot be read yields its ImageError instead of raising, so one bad photo
    in a folder of hundreds costs one skipped item, not the whole run; ``collate`` drops it.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], transform: Callable,
                 targets: Sequence[int] | None = None):
        self.paths = [Path(p) for p in paths]
        self.transform = transform
        self.targets = list(targets) if targets is not None else [-1] * len(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            picture = load_image(self.paths[index])
        except ImageError as error:
            return error
        return self.transform(picture), self.targets[index], index


def collate(items: list):
    """Stack good items into a batch; bad ones travel alongside as a list of ImageErrors."""
    import torch

    good = [item for item in items if not isinstance(item, ImageError)]
    errors = [item for item in items if isinstance(item, ImageError)]
    if not good:
        return None, None, None, errors
    images = torch.stack([item[0] for item in good])
    targets = torch.tensor([item[1] for item in good])
    indices = torch.tensor([item[2] for item in good])
    return images, targets, indices, errors
