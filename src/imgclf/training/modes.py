"""train(data): the quick start in one call, over the public lower layer (Learner).

The mode (TrainConfig.mode) decides the input sizes pictures are read at (plan.data_for) and
the plan of phases (plan.plan_for); a Learner runs that plan (learner.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from imgclf._progress import console
from imgclf.backbones import get_backbone, offline_backbones
from imgclf.config import HeadConfig, TrainConfig
from imgclf.data.imagedata import ImageData
from imgclf.errors import BackboneError, ImgclfError
from imgclf.model import Classifier
from imgclf.training.distributed import resolve_device
from imgclf.training.embeddings import fit_probe
from imgclf.training.learner import Learner
from imgclf.training.plan import data_for, describe_seconds, plan_for, probe_views, time_limit

__all__ = ["choose_backbone", "train"]

# backbone="auto": the share of the run's time limit the candidates' probes may take (the
# rest is left to fine-tuning); a candidate is probed while the time spent choosing plus its
# estimate (the last probe's seconds times COST_GROWTH) stays inside that share.
CHOICE_SHARE = 0.5
COST_GROWTH = 2.0


def train(data: ImageData, *, backbone: str | None = None, weights: str | os.PathLike | None = None,
          output: str | os.PathLike | None = None, head: HeadConfig = HeadConfig(),
          config: TrainConfig | None = None, verbose: bool = True, callbacks: Sequence[Any] = (),
          **training) -> Learner:
    """Train a classifier on the data: the five-line quick start in one call.

    Args:
        backbone: defaults to the backbone the data was prepared for; "auto" probes each
            ImageNet backbone on this computer (efficientnet_lite0, 1, 2) within half the
            time limit and trains the one with the lowest cross-validated loss
            (choose_backbone).
        weights: a ``.safetensors`` or ``.pth`` file of the backbone's weights instead of its
            ImageNet ones (a backbone that is not on this computer offline, say).
        output: folder for the settings, checkpoints, the best and final model, the history.
        config: a TrainConfig; or give its fields as keywords (mode="auto", epochs=6,
            freeze_epochs=2, learning_rate=1e-3, ...): TrainConfig holds every default.
            mode "auto" (the default) probes alone for tiny data, else probes, then fine-tunes
            the whole network from the probed head, keeping the better epoch; "probe" fits a
            head on cached embeddings in seconds; "fine_tune" trains head epochs, then the
            whole network. probe and auto read pictures at 1.3x the backbone's pretrained size
            (288 for efficientnet_lite0) unless the data was given an image_size.

    Example:
        >>> data = ImageData.from_folder("cats", valid_fraction=0.2, seed=42)
        >>> model = train(data, backbone="efficientnet_lite0")
        >>> model.predict("tiger.jpg").label
        'wild_cat'
    """
    if backbone == "auto" and (weights is not None or data.weights is not None):
        raise BackboneError("backbone='auto' chooses among ImageNet backbones; a weights "
                            "file belongs to one backbone: name it.")
    if weights is not None:
        data = data.for_backbone(backbone or data.backbone, weights=weights)
    elif backbone is not None and backbone not in ("auto", data.backbone):
        data = data.for_backbone(backbone)
    if config is None:
        training.setdefault("seed", data.config.seed)
    config = replace(config or TrainConfig(), **training)
    if config.mode == "auto":  # auto keeps whichever epoch, the probe included, is best
        config = replace(config, restore_best=True)
    choice, began = None, time.perf_counter()
    if backbone == "auto":
        data, choice = choose_backbone(data, config, verbose=verbose)
    data = data_for(config, data)
    learner = Learner.create(data, head=head, config=config, output=output, verbose=verbose,
                             callbacks=callbacks)
    learner.backbone_choice = choice
    return learner.fit(plan_for(config, data), started=began)  # the choice counts in the time


def choose_backbone(data: ImageData, config: TrainConfig, *,
                    candidates: Sequence[str] | None = None, verbose: bool = True
                    ) -> tuple[ImageData, list[dict[str, Any]]]:
    """(the data prepared for the backbone whose probe has the lowest cross-validated loss,
    a row per candidate probed: backbone, cv_loss, cv_accuracy, seconds).

    candidates: smallest first; default: the ImageNet backbones on this computer offline
    (efficientnet_lite0, 1 and 2 with their weight packages installed). Under a time limit
    (TrainConfig.time_limit; auto mode on a CPU: 10 minutes) candidates are probed while the
    probes fit in CHOICE_SHARE of it; the first is always probed. Each probe's embeddings
    are cached, so the chosen one's probe phase reads them instead of computing them again.
    """
    if candidates is None:
        candidates = [name for name in offline_backbones()
                      if get_backbone(name).available_offline()]
    if not candidates:
        raise BackboneError("backbone='auto' found no backbone whose weights are on this "
                            "computer: pip install imgclf (efficientnet_lite0's weights).")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun
        raise ImgclfError("backbone='auto' chooses in one process: run it once alone (a "
                          "probe run, mode='probe', takes seconds to minutes), then train on "
                          "several with the backbone it names.")
    limit = time_limit(config, resolve_device(config.device).type)
    budget = limit * CHOICE_SHARE if limit else None
    rows: list[dict[str, Any]] = []
    began = time.perf_counter()
    for name in candidates:
        spent = time.perf_counter() - began
        if rows and budget is not None and spent + rows[-1]["seconds"] * COST_GROWTH > budget:
            if verbose:
                console().print(f"  {name}: not probed (its probe would take the choice past "
                                f"{describe_seconds(budget)}, half the time limit)")
            break
        started = time.perf_counter()
        candidate = data_for(config, data.for_backbone(name))
        network = Classifier.create(name, len(candidate.classes))
        row = fit_probe(network, candidate, views=probe_views(candidate), seed=config.seed,
                        show_progress=verbose)
        if row["cv_loss"] is None:  # too few pictures to cross-validate: nothing to compare
            rows.append({"backbone": name, "cv_loss": None, "cv_accuracy": None,
                         "seconds": round(time.perf_counter() - started, 1)})
            break
        rows.append({"backbone": name, "cv_loss": row["cv_loss"],
                     "cv_accuracy": row["cv_accuracy"],
                     "seconds": round(time.perf_counter() - started, 1)})
        if verbose:
            console().print(f"  {name}: cross-validated loss {_figure(row['cv_loss'])}, "
                            f"accuracy {_figure(row['cv_accuracy'])} "
                            f"({describe_seconds(rows[-1]['seconds'])})")
    scored = [row for row in rows if row["cv_loss"] is not None]
    best = min(scored, key=lambda row: row["cv_loss"]) if scored else rows[0]
    best["chosen"] = True
    if verbose:
        console().print(f"Backbone: {best['backbone']}"
                        + (" (the lowest cross-validated loss)" if len(scored) > 1 else ""))
    return data.for_backbone(best["backbone"]), rows


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
