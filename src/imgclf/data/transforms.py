"""Settings + a backbone's InputConfig -> the picture pipelines: evaluation in Pillow and numpy
(no torch), training a torchvision (v2) pipeline."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from imgclf.config import INTERPOLATIONS, AugmentConfig, InputConfig
from imgclf.data.decoding import ImageSource, load_image

if TYPE_CHECKING:
    from torchvision.transforms import v2



def interpolation_mode(name: str):
    """torchvision's InterpolationMode for a plain name ("bicubic", "bilinear", "nearest")."""
    from torchvision.transforms import InterpolationMode

    if name not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, not {name!r}")
    return InterpolationMode(name)


def _resampling(name: str):
    """Pillow's resampling filter for a plain interpolation name (what torchvision hands Pillow
    for a PIL picture)."""
    if name not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, not {name!r}")
    return {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC}[name]


class PadToSquare:
    """Shrink a picture to fit a size x size square and pad the rest with black (keeps it all)."""

    def __init__(self, size: int, interpolation: str = "bicubic"):
        self.size = size
        self.interpolation = interpolation

    def __call__(self, picture: Image.Image) -> Image.Image:
        return ImageOps.pad(picture, (self.size, self.size),
                            method=_resampling(self.interpolation), color=(0, 0, 0))

    def __repr__(self) -> str:
        return f"PadToSquare(size={self.size})"


class Square:
    """An upright RGB picture -> the size x size square the network sees, by config.resize.

    crop: shorter side to size / crop_fraction, then the center (timm's evaluation transform);
    squish: stretch to the square; pad: fit inside the square, black borders.
    Pillow alone, no torch: the same calls torchvision's Resize and CenterCrop make for a PIL
    picture (the same sizes, rounding and filters), so the same pixels.
    """

    def __init__(self, config: InputConfig, size: int | None = None):
        if config.resize not in ("crop", "squish", "pad"):
            raise ValueError(f"resize must be 'crop', 'squish' or 'pad', not {config.resize!r}")
        self.size = size or config.image_size
        self.resize = config.resize
        self.interpolation = config.interpolation
        self.resample = _resampling(config.interpolation)
        self.shorter = int(self.size / config.crop_fraction)
        self.pad = PadToSquare(self.size, config.interpolation)

    def __call__(self, picture: Image.Image) -> Image.Image:
        size = self.size
        if self.resize == "pad":
            return self.pad(picture)
        if self.resize == "squish":
            return _resized(picture, size, size, self.resample)
        width, height = picture.size
        if width <= height:  # torchvision's rule: the shorter side to size, the other in step
            width, height = self.shorter, int(self.shorter * height / width)
        else:
            width, height = int(self.shorter * width / height), self.shorter
        picture = _resized(picture, width, height, self.resample)
        # torchvision's anchor: round() halves to even; a crop past an edge is black
        top, left = _anchor(height, size), _anchor(width, size)
        return picture.crop((left, top, left + size, top + size))

    def decode_size(self, width: int, height: int) -> tuple[int, int]:
        """The least size a width x height picture must be decoded at for this square: a
        JPEG twice as large is decoded at reduced scale (``load_image(least=...)``), then
        resized down as a full decode would be (a few grey levels apart)."""
        if self.resize == "squish":
            return self.size, self.size
        scale = (self.shorter / min(width, height) if self.resize == "crop"
                 else self.size / max(width, height))
        return math.ceil(width * scale), math.ceil(height * scale)

    def __repr__(self) -> str:
        return f"Square(size={self.size}, resize={self.resize!r}, {self.interpolation})"


def _resized(picture: Image.Image, width: int, height: int, resample) -> Image.Image:
    return picture if picture.size == (width, height) else picture.resize((width, height),
                                                                           resample=resample)


def _anchor(length: int, crop: int) -> int:
    return int(round((length - crop) / 2.0)) if crop <= length else -((crop - length) // 2)


class Normalise:
    """A square picture (PIL, or an HxWx3 uint8 array) -> a float32 3xHxW numpy array scaled to
    0..1 and normalised with the backbone's mean and std.

    numpy alone, no torch: the same float32 operations, in the same order, as torchvision's
    ToImage, ToDtype(scale=True) and Normalize, so the same numbers bit for bit. It ends the
    evaluation pipeline and the random training one alike.
    """

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(-1, 1, 1)
        self.scale = np.float32(1.0 / 255)

    def __call__(self, picture):
        pixels = np.asarray(picture, dtype=np.uint8)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        image = pixels.transpose(2, 0, 1).astype(np.float32, order="C")
        image *= self.scale
        image -= self.mean
        image /= self.std
        return image

    def __repr__(self) -> str:
        return f"Normalise(mean={self.mean.ravel().tolist()}, std={self.std.ravel().tolist()})"


class EvalTransform:
    """The evaluation pipeline as one callable: ``finish(square(picture))``."""

    def __init__(self, square: Square, finish: Normalise):
        self.square, self.finish = square, finish

    def __call__(self, picture: Image.Image):
        return self.finish(self.square(picture))

    def decode_size(self, width: int, height: int) -> tuple[int, int]:
        """See Square.decode_size."""
        return self.square.decode_size(width, height)

    def read(self, source: ImageSource):
        """A picture file or its bytes -> the array: decoded (a large JPEG at reduced scale,
        see Square.decode_size), made upright, square and normalised."""
        return self(load_image(source, least=self.decode_size))

    def __repr__(self) -> str:
        return f"EvalTransform({self.square!r}, {self.finish!r})"


def eval_transform(config: InputConfig) -> EvalTransform:
    """Deterministic validation/inference pipeline: make the picture square, then normalise.
    Gives a float32 3xHxW numpy array (``torch.from_numpy`` makes it a tensor, sharing its
    memory); Pillow and numpy only, so predicting needs no torch until a network does.

    With resize="crop" this is timm's evaluation transform, so published accuracy reproduces.

    Example:
        >>> transform = eval_transform(InputConfig(224, (0.5,) * 3, (0.5,) * 3))
        >>> transform(load_image("ant.jpg")).shape
        (3, 224, 224)
    """
    return EvalTransform(*eval_parts(config))


def eval_parts(config: InputConfig) -> tuple[Square, Normalise]:
    """eval_transform in two: (square, finish). square makes the uint8 square picture a
    stored view keeps (pictures.StoredViews); finish turns it (PIL or HxWx3 array) into the
    normalised array, the same one eval_transform gives."""
    return Square(config), Normalise(config.mean, config.std)


# The random crop, rotation, zoom and warp resample bilinearly whatever the backbone's
# evaluation interpolation (timm trains with bilinear and bicubic at random, fastai's batch
# transforms are bilinear): hymenoptera's training transform took 4.4 ms a picture against
# 7.0-8.1 ms bicubic, one core, of a training step's 35 ms a picture on 2 cores.
TRAIN_INTERPOLATION = "bilinear"


def train_transform(config: InputConfig, augment: AugmentConfig | None) -> v2.Compose:
    """Random training pipeline: a random resized crop, flips, rotation, zoom, warp and colour.
    It gives a float32 3xHxW numpy array, as the evaluation pipeline does
    (``torch.from_numpy`` makes it a tensor, sharing its memory).

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
        steps.append(Square(config, size=int(size / config.crop_fraction)))
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
    # Normalise (numpy) rather than torchvision's ToImage, ToDtype and Normalize: the same
    # numbers bit for bit in 0.16 ms a picture against 0.95 (one core, 224 px), of about 5 ms
    # that reading and augmenting a blood-cells picture takes (bench/README.md)
    return v2.Compose([*steps, Normalise(config.mean, config.std)])
