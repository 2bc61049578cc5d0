"""Small frozen settings objects, one per pipeline stage; each can be printed and saved as JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class InputConfig:
    """What a backbone expects as input, read from its pretrained config (never hard-coded).

    Example:
        >>> InputConfig(image_size=224, mean=(0.5,) * 3, std=(0.5,) * 3).resize_size
        256
    """

    # Side of the square picture the network sees, in pixels.
    image_size: int
    # Per-channel mean and standard deviation used to normalise pixels scaled to 0..1.
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # Resampling filter for resizing: "bicubic", "bilinear" or "nearest".
    interpolation: str = "bicubic"
    # Validation pictures are resized to image_size / crop_fraction, then center-cropped.
    crop_fraction: float = 0.875

    @property
    def resize_size(self) -> int:
        """Shorter side before the center crop at evaluation time (timm's convention)."""
        return int(self.image_size / self.crop_fraction)

    @classmethod
    def from_timm(cls, data_config: dict[str, Any]) -> InputConfig:
        """Build from timm's ``resolve_model_data_config`` output."""
        return cls(
            image_size=int(data_config["input_size"][-1]),
            mean=tuple(float(x) for x in data_config["mean"]),  # type: ignore[arg-type]
            std=tuple(float(x) for x in data_config["std"]),  # type: ignore[arg-type]
            interpolation=str(data_config.get("interpolation", "bicubic")),
            crop_fraction=float(data_config.get("crop_pct", 0.875)),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> InputConfig:
        return cls(
            image_size=int(values["image_size"]),
            mean=tuple(values["mean"]),  # type: ignore[arg-type]
            std=tuple(values["std"]),  # type: ignore[arg-type]
            interpolation=str(values["interpolation"]),
            crop_fraction=float(values["crop_fraction"]),
        )
