"""Pure functions: settings + a backbone's InputConfig -> a torchvision (v2) transform pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgclf.config import InputConfig

if TYPE_CHECKING:
    from torchvision.transforms import v2

_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


def interpolation_mode(name: str):
    """torchvision's InterpolationMode for a plain name ("bicubic", "bilinear", "nearest")."""
    from torchvision.transforms import InterpolationMode

    if name not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {_INTERPOLATIONS}, not {name!r}")
    return InterpolationMode(name)


def normalize(config: InputConfig) -> list:
    """PIL picture -> float tensor scaled to 0..1 and normalised with the backbone's mean/std."""
    import torch
    from torchvision.transforms import v2

    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(config.mean), std=list(config.std)),
    ]


def eval_transform(config: InputConfig) -> v2.Compose:
    """Deterministic validation/inference pipeline: resize the shorter side, center-crop, normalise.

    Matches timm's evaluation transform, so a backbone's published accuracy is reproducible.

    Example:
        >>> transform = eval_transform(InputConfig(224, (0.5,) * 3, (0.5,) * 3))
        >>> transform(load_image("ant.jpg")).shape
        torch.Size([3, 224, 224])
    """
    from torchvision.transforms import v2

    return v2.Compose([
        v2.Resize(config.resize_size, interpolation=interpolation_mode(config.interpolation),
                  antialias=True),
        v2.CenterCrop(config.image_size),
        *normalize(config),
    ])
