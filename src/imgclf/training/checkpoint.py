"""Checkpoints: after every epoch (and the probe) a run's weights, optimizer state and place
in its plan go to ``checkpoint.safetensors``, so an interrupted run loses at most one epoch.

A checkpoint is a model file (safetensors + ModelInfo) whose ``checkpoint`` field holds the
plan, the position in it, the optimizer's JSON state and the best epoch so far; the
optimizer's tensors are stored beside the weights. Nothing is pickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from imgclf._progress import console
from imgclf.data.imagedata import ImageData
from imgclf.errors import DataError, ModelFileError
from imgclf.model import MODEL_PREFIX, Classifier, network_from_tensors
from imgclf.modelfile import SUFFIX, ModelInfo, load_model, save_model
from imgclf.training.plan import Phase

# The files of a run's output folder.
CHECKPOINT = "checkpoint.safetensors"
BEST = "best" + SUFFIX  # the best epoch so far by TrainConfig.monitor
# and modelfile.FINAL, the model file written when the run ends
SETTINGS = "settings.json"  # every resolved setting, written when the run starts
HISTORY = "history.json"
_OPTIMIZER = "optimizer."


@dataclass(frozen=True)
class Checkpoint:
    """A run's saved state, as read back by ``read_checkpoint``."""

    tensors: dict[str, torch.Tensor]  # the network's weights (model file names)
    info: ModelInfo
    plan: list[Phase]
    phase: int  # index of the phase the last finished epoch belongs to
    epoch: int  # that epoch within its phase
    optimizer: dict | None  # the optimizer's state_dict (None after a probe)
    best: dict[str, Any] | None  # the best history row so far


def run_settings(learner: Any, plan: list[Phase] | None, time_limit: float | None
                 ) -> dict[str, Any]:
    """A Learner's fully resolved settings (Learner.settings): what a run prints when it
    starts and saves as SETTINGS beside its checkpoints."""
    data, device = learner.data, learner.device
    return {
        "backbone": data.backbone, "weights": data.weights, "classes": data.classes,
        "device": str(device), "threads": torch.get_num_threads(),
        "input": data.input.to_dict(), "data": data.config.to_dict(),
        "augment": data.augment.to_dict() if data.augment else None,
        "head": learner.network.head.config.to_dict(), "training": learner.config.to_dict(),
        "time_limit_seconds": time_limit,
        "plan": [asdict(phase) for phase in plan or []],
        "backbone_choice": learner.backbone_choice,
        "output": str(learner.output) if learner.output else None,
    }


def save_checkpoint(path: Path, network: torch.nn.Module, info: ModelInfo, *,
                    plan: list[Phase], phase: int, epoch: int,
                    optimizer: torch.optim.Optimizer | None, best: dict[str, Any] | None
                    ) -> Path:
    tensors = {MODEL_PREFIX + k: v for k, v in network.state_dict().items()}
    optimizer_json = None
    if optimizer is not None:
        optimizer_tensors, optimizer_json = _split_optimizer_state(optimizer.state_dict())
        tensors.update(optimizer_tensors)
    state = {"plan": [asdict(p) for p in plan], "phase": phase, "epoch": epoch,
             "optimizer": optimizer_json, "best": best}
    return save_model(path, tensors, replace(info, checkpoint=state))


def read_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint file.

    Raises:
        ModelFileError: missing, damaged, or a plain model file.
    """
    tensors, info = load_model(path)
    state = info.checkpoint
    if state is None:
        raise ModelFileError(f"{path} is a model file, not a checkpoint.")
    optimizer = (_join_optimizer_state(tensors, state["optimizer"])
                 if state.get("optimizer") else None)
    weights = {k: v for k, v in tensors.items() if not k.startswith(_OPTIMIZER)}
    return Checkpoint(weights, replace(info, checkpoint=None),
                      [Phase.from_dict(p) for p in state["plan"]], state["phase"],
                      state["epoch"], optimizer, state.get("best"))


@dataclass(frozen=True)
class Run:
    """An interrupted run as its output folder holds it: what Learner.resume continues."""

    data: ImageData  # the data at the run's own input size, with its own weights file
    network: Classifier  # the last checkpoint's weights
    saved: Checkpoint
    best_state: dict[str, torch.Tensor] | None  # the best epoch's weights, without detector
    start: tuple[int, int] | None  # (phase, epoch) to continue from; None: it had finished
    optimizer: dict | None  # the optimizer's state to continue with
    backbone_choice: list | None = None  # train(backbone="auto")'s probes, from the settings


def read_run(output: Path, data: ImageData, *, verbose: bool = True) -> Run:
    """Read an output folder's checkpoint, best model and settings for resuming on data.

    Raises:
        ModelFileError: no readable checkpoint. DataError: other data or another split.
    """
    saved = read_checkpoint(output / CHECKPOINT)
    info = saved.info
    check_same_data(info, data, output)
    if info.backbone != data.backbone and data.weights is None:  # the run's own (a chosen one)
        data = data.for_backbone(info.backbone)
    settings = (json.loads((output / SETTINGS).read_text(encoding="utf-8"))
                if (output / SETTINGS).exists() else {})
    if data.weights is None:  # the run's own weights file
        weights = settings.get("weights")
        if weights and Path(weights).is_file():
            data = data.for_backbone(data.backbone, weights=weights)
        elif weights and verbose:  # the checkpoint holds every weight: only caches differ
            console().print(f"[yellow]The run's weights file {weights} is gone; resuming "
                            "from the checkpoint's weights (pass --weights to name it).")
    network = network_from_tensors(saved.tensors, info, str(output / CHECKPOINT))
    if info.input != data.input:  # the run's own sizes: probe and auto mode change them
        data = data.with_input(info.input)
    best_state = None
    if saved.best is not None and (output / BEST).exists():
        best_tensors, _ = load_model(output / BEST)
        # a finished run's best.imgclf also holds its detector, refitted at every end
        best_state = {k[len(MODEL_PREFIX):]: v for k, v in best_tensors.items()
                      if k.startswith(MODEL_PREFIX)
                      and not k.startswith(MODEL_PREFIX + "detector.")}
    plan, phase, epoch = saved.plan, saved.phase, saved.epoch + 1
    optimizer = saved.optimizer
    if epoch >= plan[phase].epochs:  # the phase had finished: start the next one afresh
        phase, epoch, optimizer = phase + 1, 0, None
    start = (phase, epoch) if phase < len(plan) else None
    return Run(data, network, saved, best_state, start, optimizer,
               settings.get("backbone_choice"))


def check_same_data(info: ModelInfo, data: ImageData, path: Path) -> None:
    """Refuse to resume a run on other data or another split: trained pictures would move
    into validation, and its figures would mean nothing.

    Raises:
        DataError: other classes, split settings or pictures than the run started with.
    """
    if list(info.classes) != data.classes:
        raise DataError(f"{path} was trained on classes {list(info.classes)}, but the data has "
                        f"{data.classes}: resume with the same data, or start a new run.")
    saved = info.data
    changed = [f"{name} {getattr(saved, name)} then, {getattr(data.config, name)} now"
               for name in ("valid_fraction", "seed")
               if saved is not None and getattr(saved, name) != getattr(data.config, name)]
    if changed:
        raise DataError(f"{path} split its pictures with other settings ({'; '.join(changed)}): "
                        "resume with the run's own split settings (imgclf train --resume "
                        "reads them from the checkpoint), or start a new run in another folder.")
    if info.counts and info.counts != data.counts():
        then, now = _pictures(info.counts), _pictures(data.counts())
        raise DataError(f"The pictures changed since {path} was written ({then} then, {now} now), "
                        "so its split would change too: start a new run in another folder.")


def _pictures(counts: dict[str, dict[str, int]]) -> str:
    total = {split: sum(row.get(split, 0) for row in counts.values())
             for split in ("train", "valid")}
    return f"{total['train']} training and {total['valid']} validation pictures"


def _split_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer state_dict as tensors (for safetensors) and JSON (everything else)."""
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{_OPTIMIZER}{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], saved: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        if key.startswith(_OPTIMIZER):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = tensor
    for key, value in saved.get("scalars", {}).items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = [{**group, "betas": tuple(group["betas"])} for group in saved["param_groups"]]
    return {"state": state, "param_groups": groups}
