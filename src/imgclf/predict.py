"""The one inference path: pictures in, class probabilities out (used by evaluate, export and serve)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from imgclf._progress import progress
from imgclf.config import InputConfig
from imgclf.data import ImageFiles, collate
from imgclf.errors import ImageError
from imgclf.transforms import eval_transform

if TYPE_CHECKING:
    import numpy as np
    from torch import nn


def default_workers() -> int:
    """DataLoader worker processes: one core is left for the network itself."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def predict_probabilities(
    network: nn.Module,
    paths: Sequence[str | os.PathLike],
    config: InputConfig,
    *,
    batch_size: int = 32,
    num_workers: int | None = None,
    show_progress: bool = True,
    description: str = "Predicting",
) -> tuple[np.ndarray, list[ImageError]]:
    """Softmax probabilities for image files, in the order given.

    Files that cannot be read are skipped: their rows are NaN and their errors are returned.

    Returns:
        (probabilities of shape (len(paths), num_classes), errors)
    """
    import numpy as np
    import torch

    dataset = ImageFiles(paths, eval_transform(config))
    workers = default_workers() if num_workers is None else num_workers
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate,
        persistent_workers=False,
    )
    rows: dict[int, np.ndarray] = {}
    errors: list[ImageError] = []
    # channels_last: 1.6x faster at batch 32 on a 2-core CPU (bench/backbone_speed.py).
    network.eval().to(memory_format=torch.channels_last)
    batches = progress(loader, total=len(dataset), description=description,
                       enabled=show_progress, weight=lambda batch: _batch_len(batch))
    with torch.inference_mode():
        for images, _targets, indices, batch_errors in batches:
            errors.extend(batch_errors)
            if images is None:
                continue
            images = images.contiguous(memory_format=torch.channels_last)
            probabilities = network(images).float().softmax(dim=1).numpy()
            for index, row in zip(indices.tolist(), probabilities):
                rows[index] = row
    width = next(iter(rows.values())).shape[0] if rows else 0
    result = np.full((len(dataset), width), np.nan, dtype=np.float32)
    for index, row in rows.items():
        result[index] = row
    return result, errors


def _batch_len(batch) -> int:
    images, _targets, _indices, errors = batch
    return (0 if images is None else len(images)) + len(errors)
