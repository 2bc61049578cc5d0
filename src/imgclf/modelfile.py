"""The model file: safetensors weights with imgclf's JSON metadata in the same header.

One file, readable by any safetensors tool, never unpickled. The metadata is a ``ModelInfo``:
everything needed to rebuild the network and use it offline (backbone, input config, classes,
head) plus what it scored and how it was trained. This module is the only place that reads or
writes it. A SHA-256 checksum over the tensors and the whole header catches damage and edits
(format 4 on; older files' checksums cover their tensors only).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgclf._files import atomic_path
from imgclf._version import __version__
from imgclf.config import (AugmentConfig, DataConfig, HeadConfig, InputConfig, TrainConfig,
                           UnknownConfig)
from imgclf.errors import ModelFileError

if TYPE_CHECKING:
    import numpy as np
    import torch

FORMAT = "imgclf"
# 4: the checksum covers the header (format, version, metadata) as well as the tensors.
# 3: an "unknown" detector (tensors model.detector.* and ModelInfo.unknown). 2: the metadata
# is a ModelInfo; resize lives in the input config. 1 (imgclf 0.1 before the ModelInfo).
# Every older format still loads (without a detector, it says so).
# 5: multi-label models (ModelInfo.multi_label, thresholds), so that an imgclf from before
# them refuses the file instead of answering with a softmax; single-label files stay 4.
FORMAT_VERSION = 5
SINGLE_LABEL_VERSION = 4
# the header fields the checksum covers, from format 4
_CHECKED = ("format", "format_version", "metadata")
SUFFIX = ".imgclf"
# The model file a training run writes in its output folder when it ends; `imgclf predict RUN`
# reads it.
FINAL = "model" + SUFFIX


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says besides its weights: how to rebuild and use the network, what it
    scored on its validation pictures, and how it was trained.

    Example:
        >>> info = imgclf.load("ants.imgclf").info
        >>> info.classes, info.input.image_size, info.metrics["accuracy"]
        (('ants', 'bees'), 288, 0.967)
    """

    backbone: str
    classes: tuple[str, ...]
    input: InputConfig
    head: HeadConfig = HeadConfig()
    # timm's architecture and pretrained tag, and the width of its pooled features
    timm_name: str | None = None
    num_features: int | None = None
    imgclf_version: str = __version__
    # valid_loss, accuracy and error_rate of the weights in the file
    metrics: dict[str, float] = field(default_factory=dict)
    best_epoch: int | None = None
    # one row per epoch (or probe): epoch, phase, train_loss, valid_loss, accuracy, ...
    history: tuple[dict[str, Any], ...] = ()
    training: TrainConfig | None = None
    data: DataConfig | None = None
    augment: AugmentConfig | None = None
    # pictures per class and split: {"ants": {"train": 123, "valid": 70, "test": 0}, ...}
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    # the "unknown" detector's settings and threshold; None: the model always names a class
    unknown: UnknownConfig | None = None
    # the training pictures of the detector's bank, in its order (paths as they were when it
    # trained): an explanation shows the nearest of them; () in older files
    bank_pictures: tuple[str, ...] = ()
    # several labels per picture: independent (sigmoid) probabilities, and each label is
    # given where its probability reaches its threshold (one per class, chosen on the
    # validation pictures for the best F1; () means 0.5 each)
    multi_label: bool = False
    thresholds: tuple[float, ...] = ()
    created: str | None = None
    # a run's state (plan, position, optimizer, best epoch): only in checkpoint files
    checkpoint: dict[str, Any] | None = None

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "history", tuple(self.history))
        object.__setattr__(self, "bank_pictures", tuple(self.bank_pictures))
        object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))
        if self.thresholds and (len(self.thresholds) != len(self.classes) or not all(
                0 <= t <= 1 for t in self.thresholds)):
            raise ValueError("thresholds must be one probability (0 to 1) per class")
        if not self.classes or not all(isinstance(name, str) and name.strip()
                                       for name in self.classes):
            raise ValueError(f"classes must be names, not {list(self.classes)!r}")
        repeated = sorted({name for name in self.classes if self.classes.count(name) > 1})
        if repeated:
            raise ValueError(f"each class must be named once, but {', '.join(repeated)} "
                             "is named twice")

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in ("input", "head", "training", "data", "augment", "unknown"):
            if values[name] is not None:
                values[name] = values[name].to_dict()
        values["classes"], values["history"] = list(self.classes), list(self.history)
        values["bank_pictures"] = list(self.bank_pictures)
        values["thresholds"] = list(self.thresholds)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any], version: int = FORMAT_VERSION) -> ModelInfo:
        """Read the metadata of any format version; unknown keys (from newer files) are ignored.

        Raises:
            KeyError, TypeError, ValueError: it does not describe a network.
        """
        values = dict(values)
        if version < 2:  # format 1 kept resize beside the input config
            values["input"] = {**values["input"], "resize": values.get("resize", "crop")}
            data = values.get("data") or {}
            values["counts"] = data.get("counts", {})
            values["augment"] = data.get("augment")
        return cls(
            backbone=str(values["backbone"]),
            classes=tuple(str(label) for label in values["classes"]),
            input=InputConfig.from_dict(values["input"]),
            head=HeadConfig(**_known(HeadConfig, values.get("head") or {})),
            timm_name=values.get("timm_name"),
            num_features=values.get("num_features"),
            imgclf_version=values.get("imgclf_version", "unknown"),
            metrics=dict(values.get("metrics") or {}),
            best_epoch=values.get("best_epoch"),
            history=tuple(values.get("history") or ()),
            training=config_from_dict(TrainConfig, values.get("training")),
            data=config_from_dict(DataConfig, values.get("data")),
            augment=config_from_dict(AugmentConfig, values.get("augment")),
            counts=dict(values.get("counts") or {}),
            unknown=config_from_dict(UnknownConfig, values.get("unknown")),
            bank_pictures=tuple(str(path) for path in values.get("bank_pictures") or ()),
            multi_label=bool(values.get("multi_label", False)),
            thresholds=tuple(values.get("thresholds") or ()),
            created=values.get("created"),
            checkpoint=values.get("checkpoint"),
        )


def _known(config: type, values: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(config)}
    return {key: value for key, value in values.items() if key in names}


# Settings renamed since a model file was written: old name -> new name.
_RENAMED = {"unknown_acceptance": "acceptance"}
# Settings added since: what a file without them did (a run resumed from it goes on so).
_BEFORE = {"freeze_early": False, "progressive_resizing": False, "reuse_views": False}


def config_from_dict(config: type, values: dict[str, Any] | None):
    """A settings dataclass from JSON values; keys it does not know (from newer files) are
    ignored, renamed ones read under their new name, and lists become tuples."""
    if not values:
        return None
    values = {_RENAMED.get(key, key): value for key, value in values.items()}
    known = {**_known(config, _BEFORE), **_known(config, values)}
    for name, value in known.items():  # JSON has no tuples
        if isinstance(value, list):
            known[name] = tuple(value)
    return config(**known)


def save_model(path: str | os.PathLike, tensors: dict[str, torch.Tensor], info: ModelInfo
               ) -> Path:
    """Write tensors and their ModelInfo atomically (a crash mid-write never leaves a broken
    file)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION if info.multi_label else SINGLE_LABEL_VERSION),
        "metadata": json.dumps(info.to_dict(), default=str),
    }
    header["checksum"] = _checksum(tensors, header)
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata=header)
    return path


def load_model(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ModelInfo]:
    """Read and check a file written by save_model (or by an older imgclf).

    Raises:
        ModelFileError: missing, truncated, not an imgclf file, from a newer imgclf, its
            tensors do not match the checksum written with them, or its metadata does not
            describe a network.
    """
    import torch
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"Model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:  # noqa: BLE001 - safetensors raises several types
        raise _unreadable(path, error) from None
    version = _format_version(path, header)
    if header.get("checksum") != _checksum(tensors, header if version >= 4 else None):
        raise ModelFileError(f"{path} is damaged or was modified after it was saved: its "
                             "weights or metadata do not match their checksum. Export the "
                             "model again from its training run, or download it again.")
    broken = [name for name, tensor in tensors.items()
              if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if broken:
        raise ModelFileError(f"{path} holds weights that are not numbers (NaN or infinite: "
                             f"{', '.join(broken[:3])}{', ...' if len(broken) > 3 else ''}): "
                             "a diverged run or a damaged export; train or export it again.")
    return tensors, _info(path, header, version)


def read_info(path: str | os.PathLike, tensor: str | None = None
              ) -> tuple[ModelInfo, np.ndarray | None]:
    """A model file's ModelInfo and one of its tensors (numpy; None when it has no such
    tensor), read without torch and without reading the other tensors.

    Nothing is checked against the checksum: this is for a file known to be, byte for byte,
    one that ``load_model`` read and checked (the graph index of inference/graphs.py).
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            header = handle.metadata() or {}
            values = handle.get_tensor(tensor) if tensor in handle.keys() else None
    except Exception as error:  # noqa: BLE001 - safetensors raises several types
        raise _unreadable(Path(path), error) from None
    return _info(Path(path), header, _format_version(Path(path), header)), values


def _unreadable(path: Path, error: Exception) -> ModelFileError:
    return ModelFileError(
        f"{path} is not a readable model file: it is damaged (truncated download?) or not "
        f"a safetensors file ({error})")


def _format_version(path: Path, header: dict[str, str]) -> int:
    """The header's format version, once it is known to be an imgclf file this one reads."""
    if header.get("format") != FORMAT:
        raise ModelFileError(f"{path} is a safetensors file but not an imgclf model file "
                             "(no imgclf metadata). Export models with Learner.export().")
    try:
        version = int(header.get("format_version", "0"))
    except ValueError:
        version = -1
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path} was written by a newer imgclf (format {version}; this one "
                             f"reads up to {FORMAT_VERSION}): pip install -U imgclf")
    return version


def _info(path: Path, header: dict[str, str], version: int) -> ModelInfo:
    try:
        values = json.loads(header["metadata"])
    except (KeyError, ValueError) as error:
        raise ModelFileError(f"{path}: its metadata is not valid JSON ({error})") from None
    try:
        return ModelInfo.from_dict(values, version)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ModelFileError(f"{path}: its metadata does not describe a network "
                             f"({type(error).__name__}: {error})") from None


def _checksum(tensors: dict[str, torch.Tensor], header: dict[str, str] | None = None) -> str:
    """SHA-256 of every tensor (name, dtype, shape, bytes) and, given a header, of its format,
    version and metadata strings (lengths first, so no two headers hash alike)."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    for key in _CHECKED if header is not None else ():
        value = str(header.get(key, "")).encode()
        digest.update(f"{key}|{len(value)}|".encode() + value)
    return digest.hexdigest()
