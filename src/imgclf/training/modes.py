"""train(data): the quick start in one call, over the public lower layer (Learner).

The mode (TrainConfig.mode) decides the input sizes pictures are read at (plan.data_for) and
the plan of phases (plan.plan_for); a Learner runs that plan (learner.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from imgclf.config import HeadConfig, TrainConfig
from imgclf.data.imagedata import ImageData
from imgclf.training.learner import Learner
from imgclf.training.plan import data_for, plan_for

__all__ = ["train"]


def train(data: ImageData, *, backbone: str | None = None, weights: str | os.PathLike | None = None,
          output: str | os.PathLike | None = None, head: HeadConfig = HeadConfig(),
          config: TrainConfig | None = None, verbose: bool = True, callbacks: Sequence[Any] = (),
          **training) -> Learner:
    """Train a classifier on the data: the five-line quick start in one call.

    Args:
        backbone: defaults to the backbone the data was prepared for.
        weights: a ``.safetensors`` or ``.pth`` file of the backbone's weights instead of its
            ImageNet ones (a backbone that is not on this computer offline, say).
        output: folder for the settings, checkpoints, the best and final model, the history.
        config: a TrainConfig; or give its fields as keywords (mode="auto", epochs=4,
            freeze_epochs=2, learning_rate=1e-3, ...): TrainConfig holds every default.
            mode "auto" (the default) probes alone for tiny data, else probes, then fine-tunes
            the whole network from the probed head, keeping the better epoch; "probe" fits a
            head on cached embeddings in seconds; "fine_tune" trains head epochs, then the
            whole network. probe and auto read pictures at 1.3x the backbone's pretrained size
            (288 for efficientnet_lite0) unless the data was given an image_size.

    Example:
        >>> data = ImageData.from_folder("cats", valid_fraction=0.2, seed=42)
        >>> model = train(data, backbone="efficientnet_lite0", epochs=4)
        >>> model.predict("tiger.jpg").label
        'wild_cat'
    """
    if weights is not None:
        data = data.for_backbone(backbone or data.backbone, weights=weights)
    elif backbone is not None and backbone != data.backbone:
        data = data.for_backbone(backbone)
    if config is None:
        training.setdefault("seed", data.config.seed)
    config = replace(config or TrainConfig(), **training)
    if config.mode == "auto":  # auto keeps whichever epoch, the probe included, is best
        config = replace(config, restore_best=True)
    data = data_for(config, data)
    learner = Learner.create(data, head=head, config=config, output=output, verbose=verbose,
                             callbacks=callbacks)
    return learner.fit(plan_for(config, data))
