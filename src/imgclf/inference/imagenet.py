"""Classify photos into the 1000 ImageNet classes with a backbone's own head (a weights check)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from imgclf.backbones import create_backbone, input_config
from imgclf.config import DEFAULT_BACKBONE, InferenceConfig
from imgclf.data.transforms import eval_transform
from imgclf.errors import ImageError
from imgclf.inference import loop


@dataclass(frozen=True)
class ImagenetPrediction:
    """Top ImageNet classes of one photo, best first: (class index, label, probability)."""

    path: Path
    top: list[tuple[int, str, float]]

    @property
    def index(self) -> int:
        return self.top[0][0]

    @property
    def label(self) -> str:
        return self.top[0][1]

    @property
    def probability(self) -> float:
        return self.top[0][2]


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """Short English names of the 1000 ImageNet classes in class-index order (shipped with timm)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_description(i).split(",")[0] for i in range(1000))


def classify_imagenet(
    paths: Sequence[str | os.PathLike],
    *,
    backbone: str = DEFAULT_BACKBONE,
    top_k: int = 1,
    batch_size: int = InferenceConfig.batch_size,
    show_progress: bool = True,
) -> tuple[list[ImagenetPrediction], list[ImageError]]:
    """Classify image files into ImageNet classes; unreadable files are returned as errors.

    Example:
        >>> results, errors = classify_imagenet(find_images("photos"))
        >>> results[0].label, round(results[0].probability, 2)
        ('tench', 0.93)
    """
    import numpy as np
    import torch

    network = create_backbone(backbone, imagenet_head=True).to(memory_format=torch.channels_last)
    outputs = loop.run(network, paths, transform=eval_transform(input_config(network)),
                            batch_size=batch_size, show_progress=show_progress,
                            description=f"ImageNet classes ({backbone})")
    labels = imagenet_labels()
    results = []
    for path, row, ok in zip(paths, outputs.probabilities, outputs.ok):
        if not ok:
            continue
        best = np.argsort(-row)[:top_k]
        results.append(ImagenetPrediction(Path(path), [(int(i), labels[i], float(row[i]))
                                                       for i in best]))
    return results, outputs.errors
