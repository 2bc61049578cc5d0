"""The evaluation pipeline in Pillow and numpy gives, bit for bit, the tensor torchvision's
Resize, CenterCrop, ToImage, ToDtype and Normalize gave (the pipeline before it), and needs
no torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from imgclf.config import INTERPOLATIONS, AugmentConfig, InputConfig
from imgclf.data.transforms import (PadToSquare, eval_parts, eval_transform, interpolation_mode,
                                   train_transform)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def torchvision_pipeline(config: InputConfig) -> v2.Compose:
    """imgclf's evaluation transform as it was written with torchvision."""
    mode = interpolation_mode(config.interpolation)
    if config.resize == "crop":
        square = [v2.Resize(config.resize_size, interpolation=mode, antialias=True),
                  v2.CenterCrop(config.image_size)]
    elif config.resize == "squish":
        square = [v2.Resize((config.image_size,) * 2, interpolation=mode, antialias=True)]
    else:
        square = [PadToSquare(config.image_size, config.interpolation)]
    return v2.Compose([*square, v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(mean=list(MEAN), std=list(STD))])


@pytest.mark.parametrize("resize", ["crop", "squish", "pad"])
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_the_same_numbers_as_torchvision(resize, interpolation):
    generator = np.random.default_rng(len(resize) * 7 + len(interpolation))
    for size, crop_fraction in ((224, 0.875), (65, 1.0), (288, 0.95)):
        config = InputConfig(size, MEAN, STD, resize=resize, interpolation=interpolation,
                             crop_fraction=crop_fraction)
        ours, theirs = eval_transform(config), torchvision_pipeline(config)
        # wide, tall, odd, square, smaller and larger than the input: every rounding path
        for width, height in ((640, 427), (300, 533), (size, size), (41, 97), (size + 1, 500)):
            picture = Image.fromarray(generator.integers(0, 256, (height, width, 3), np.uint8))
            got, want = ours(picture), theirs(picture).numpy()
            assert got.dtype == np.float32 and got.shape == (3, size, size)
            assert np.array_equal(got, want), (size, width, height)


def test_a_stored_view_finishes_to_the_same_numbers():
    config = InputConfig(64, MEAN, STD)
    square, finish = eval_parts(config)
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 70, 3), np.uint8))
    view = np.asarray(square(picture))  # what pictures.StoredViews keeps
    assert np.array_equal(finish(view), eval_transform(config)(picture))


@pytest.mark.parametrize("resize", ["crop", "squish"])
def test_the_training_pipeline_gives_torchvisions_numbers(resize):
    """The random training pipeline ends in Normalise (numpy), not torchvision's ToImage,
    ToDtype and Normalize: the same seeded augmentation, the same float32 numbers."""
    config = InputConfig(96, MEAN, STD, resize=resize)
    ours = train_transform(config, AugmentConfig(saturation=0.1))
    theirs = v2.Compose([*ours.transforms[:-1], v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                         v2.Normalize(mean=list(MEAN), std=list(STD))])
    generator = np.random.default_rng(3)
    for seed, (width, height) in enumerate(((160, 120), (97, 211), (96, 96))):
        picture = Image.fromarray(generator.integers(0, 256, (height, width, 3), np.uint8))
        torch.manual_seed(seed)
        got = ours(picture)
        torch.manual_seed(seed)
        want = theirs(picture).numpy()
        assert got.dtype == np.float32 and got.shape == (3, 96, 96)
        assert np.array_equal(got, want), (width, height)


def test_predicting_imports_no_torch(tmp_path):
    """The transform, the loop and the Predictor's module load without torch (so `imgclf
    predict` with a remembered graph starts in a fraction of a second)."""
    code = ("import sys; import imgclf.inference.predictor, imgclf.data.transforms, "
            "imgclf.inference.loop; print(sorted(m for m in ('torch', 'torchvision', 'timm') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_a_large_jpeg_is_decoded_at_reduced_scale_close_to_a_full_decode(tmp_path):
    from imgclf.data.decoding import load_image

    # a smooth photo-like picture (gradients and shapes), 12 megapixels as a phone takes it
    y, x = np.mgrid[0:3024, 0:4032]
    pixels = np.stack([x * 255 // 4031, y * 255 // 3023, (x + y) % 256], axis=2)
    pixels[1000:2000, 1500:2500] = (250, 200, 40)
    path = tmp_path / "phone.jpg"
    Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)
    transform = eval_transform(InputConfig(224, MEAN, STD))
    assert load_image(path, least=transform.decode_size).size == (504, 378)  # 1/8 scale
    reduced, full = transform.read(path), transform(load_image(path))
    assert reduced.shape == full.shape == (3, 224, 224)
    # a few grey levels apart (1/255 of a level is 0.017 after normalising)
    assert np.abs(reduced - full).mean() < 0.05
    # never below the size the square needs: a picture under twice it is decoded whole
    small = tmp_path / "small.jpg"
    Image.fromarray(pixels[:400, :500].astype(np.uint8)).save(small, quality=90)
    assert np.array_equal(transform.read(small), transform(load_image(small)))
