"""Pure functions: settings + a backbone's InputConfig -> a torchvision (v2) transform pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgclf.config import INTERPOLATIONS, AugmentConfig, InputConfig

if TYPE_CHECKING:
    from PIL import Image
    from torchvision.transforms import v2



def interpolation_mode(name: str):
    """torchvision's InterpolationMode for a plain name ("bicubic", "bilinear", "nearest")."""
    from torchvision.transforms import InterpolationMode

    if name not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, not {name!r}")
    return InterpolationMode(name)


class PadToSquare:
    """Shrink a picture to fit a size x size square and pad the rest with black (keeps it all)."""

    def __init__(self, size: int, interpolation: str = "bicubic"):
        self.size = size
        self.interpolation = interpolation

    def __call__(self, picture: Image.Image) -> Image.Image:
        from PIL import Image, ImageOps

        method = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
                  "bicubic": Image.Resampling.BICUBIC}[self.interpolation]
        return ImageOps.pad(picture, (self.size, self.size), method=method, color=(0, 0, 0))

    def __repr__(self) -> str:
        return f"PadToSquare(size={self.size})"


def normalize(config: InputConfig) -> list:
    """PIL picture -> float tensor scaled to 0..1 and normalised with the backbone's mean/std."""
    import torch
    from torchvision.transforms import v2

    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(config.mean), std=list(config.std)),
    ]


def square(config: InputConfig, size: int | None = None) -> list:
    """Deterministic steps that make a picture a size x size square by config.resize.

    crop: shorter side to size / crop_fraction, then the center (timm's evaluation transform);
    squish: stretch to the square; pad: fit inside the square, black borders.
    """
    from torchvision.transforms import v2

    size = size or config.image_size
    mode = interpolation_mode(config.interpolation)
    resize = config.resize
    if resize == "crop":
        return [v2.Resize(int(size / config.crop_fraction), interpolation=mode, antialias=True),
                v2.CenterCrop(size)]
    if resize == "squish":
        return [v2.Resize((size, size), interpolation=mode, antialias=True)]
    if resize == "pad":
        return [PadToSquare(size, config.interpolation)]
    raise ValueError(f"resize must be 'crop', 'squish' or 'pad', not {resize!r}")


def eval_transform(config: InputConfig) -> v2.Compose:
    """Deterministic validation/inference pipeline: make the picture square, then normalise.

    With resize="crop" this is timm's evaluation transform, so published accuracy reproduces.

    Example:
        >>> transform = eval_transform(InputConfig(224, (0.5,) * 3, (0.5,) * 3))
        >>> transform(load_image("ant.jpg")).shape
        torch.Size([3, 224, 224])
    """
    from torchvision.transforms import v2

    return v2.Compose([*square(config), *normalize(config)])


def eval_parts(config: InputConfig) -> tuple[v2.Compose, v2.Compose]:
    """eval_transform in two: (square, finish). square makes the uint8 square picture a
    stored view keeps (pictures.StoredViews); finish turns it (PIL or HxWx3 array) into the
    normalised tensor, the same one eval_transform gives."""
    from torchvision.transforms import v2

    return v2.Compose(square(config)), v2.Compose(normalize(config))


# The random crop, rotation, zoom and warp resample bilinearly whatever the backbone's
# evaluation interpolation (timm trains with bilinear and bicubic at random, fastai's batch
# transforms are bilinear): hymenoptera's training transform took 4.4 ms a picture against
# 7.0-8.1 ms bicubic, one core, of a training step's 35 ms a picture on 2 cores.
TRAIN_INTERPOLATION = "bilinear"


def train_transform(config: InputConfig, augment: AugmentConfig | None) -> v2.Compose:
    """Random training pipeline: a random resized crop, flips, rotation, zoom, warp and colour.

    squish and pad first make the picture a square slightly larger than the input size, so
    the random crop then works on the whole picture; crop takes its random crops directly.
    Without augmentation (augment=None) this is the evaluation pipeline.

    Example:
        >>> train_transform(InputConfig(224, (0.5,) * 3, (0.5,) * 3), AugmentConfig(rotate=0))
    """
    from torchvision.transforms import v2

    if augment is None:
        return eval_transform(config)
    size = config.train_size or config.image_size
    mode = interpolation_mode(TRAIN_INTERPOLATION)
    steps: list = []
    if config.resize != "crop":
        steps += square(config, size=int(size / config.crop_fraction))
    steps.append(v2.RandomResizedCrop(size, scale=(augment.min_scale, 1.0), interpolation=mode,
                                      antialias=True))
    if augment.flip:
        steps.append(v2.RandomHorizontalFlip())
    if augment.rotate or augment.zoom > 1:
        steps.append(v2.RandomApply([v2.RandomAffine(
            degrees=augment.rotate, scale=(1.0, augment.zoom), interpolation=mode)],
            p=augment.probability))
    if augment.warp:
        steps.append(v2.RandomPerspective(distortion_scale=augment.warp, p=augment.probability,
                                          interpolation=mode))
    if augment.brightness or augment.contrast or augment.saturation:
        steps.append(v2.RandomApply([v2.ColorJitter(
            brightness=augment.brightness, contrast=augment.contrast,
            saturation=augment.saturation)], p=augment.probability))
    if augment.policy == "randaugment":
        steps.append(v2.RandAugment(interpolation=mode))
    elif augment.policy == "trivialaugment":
        steps.append(v2.TrivialAugmentWide(interpolation=mode))
    return v2.Compose([*steps, *normalize(config)])
