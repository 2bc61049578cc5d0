"""load_image on every kind of real-world file, each generated here."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imgclf import ImageError, load_image


def _png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def test_rgb_jpeg_is_returned_as_rgb(make_picture):
    picture = load_image(make_picture("a.jpg", quality=95))
    assert picture.mode == "RGB" and picture.size == (64, 48)
    assert np.allclose(np.asarray(picture).reshape(-1, 3).mean(0), (200, 30, 30), atol=4)


def test_exif_orientation_is_applied(tmp_path):
    # A 60x20 picture, left half red; EXIF orientation 6 means "rotate 90 degrees clockwise".
    stored = np.zeros((20, 60, 3), dtype=np.uint8)
    stored[:, :30] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)

    upright = np.asarray(load_image(path))
    assert upright.shape == (60, 20, 3)  # width and height swapped
    assert upright[5, 10, 0] > 200 and upright[55, 10, 0] < 50  # red is now on top


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "YCbCr"])
def test_other_modes_become_rgb(make_picture, mode):
    suffix = ".jpg" if mode in ("CMYK", "YCbCr") else ".png"
    picture = load_image(make_picture(f"a{suffix}", mode=mode))
    assert picture.mode == "RGB" and picture.size == (64, 48)


def test_cmyk_colours_survive(make_picture):
    picture = load_image(make_picture("cmyk.jpg", mode="CMYK", color=(0, 0, 255), quality=95))
    red, green, blue = np.asarray(picture).reshape(-1, 3).mean(0)
    assert blue > 200 and red < 60 and green < 60


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_pixels_become_white(tmp_path, mode):
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red, but the left half fully transparent
    rgba[:, 5:, 3] = 255
    picture = Image.fromarray(rgba, "RGBA")
    if mode != "RGBA":
        picture = picture.convert(mode)
    result = np.asarray(load_image(_png_bytes(picture)))
    assert result[0, 0].tolist() == [255, 255, 255]
    assert result[0, 9].tolist() != [255, 255, 255]


def test_palette_with_transparency_becomes_white(tmp_path):
    picture = Image.new("P", (8, 8), 1)
    picture.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    picture.info["transparency"] = 1
    path = tmp_path / "transparent.gif"
    picture.save(path, transparency=1)
    assert np.asarray(load_image(path))[0, 0].tolist() == [255, 255, 255]


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64 * 16).reshape(16, 64).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    result = np.asarray(load_image(path))[..., 0].astype(int)
    assert result.min() == 0 and result.max() == 255
    assert 100 < result.mean() < 155  # a ramp averages mid-grey; clipping would give ~250


def test_float_image_in_zero_to_one_is_scaled():
    picture = Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32), "F")
    buffer = io.BytesIO()
    picture.save(buffer, format="TIFF")
    assert abs(int(np.asarray(load_image(buffer.getvalue()))[0, 0, 0]) - 128) <= 1


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    path = tmp_path / "animated.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    red, green, blue = np.asarray(load_image(path))[8, 8]
    assert red > 200 and green < 50 and blue < 50


def test_bytes_and_open_files_are_accepted(make_picture):
    path = make_picture("a.png")
    assert load_image(path.read_bytes()).size == (64, 48)
    with open(path, "rb") as handle:
        assert load_image(handle).size == (64, 48)
        assert not handle.closed  # the caller's file stays the caller's


def test_max_side_shrinks_large_pictures(make_picture):
    picture = load_image(make_picture("big.jpg", size=(1200, 800)), max_side=300)
    assert picture.size == (300, 200)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty file"),
        (b"hello, this is a text file\n" * 5, "not an image"),
        (b"<!DOCTYPE html><html><body>Forbidden</body></html>", "HTML page"),
        (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, "corrupt image"),
    ],
    ids=["zero-byte", "text", "html", "corrupt-jpeg"],
)
def test_bad_files_raise_image_error_naming_file_and_reason(tmp_path, content, reason):
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError) as caught:
        load_image(path)
    assert caught.value.source == str(path)
    assert reason in caught.value.reason
    assert str(path) in str(caught.value)


def test_truncated_jpeg_raises_image_error(make_picture):
    path = make_picture("whole.jpg", size=(400, 300), quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        load_image(path)


def test_missing_file_and_folder_raise_image_error(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "nowhere.jpg")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)


def test_decompression_bomb_guard_is_kept(make_picture, monkeypatch):
    path = make_picture("bomb.png", size=(400, 400))
    # Pillow refuses pictures over twice MAX_IMAGE_PIXELS; lower it instead of writing 180 MP.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400 * 400 // 4)
    with pytest.raises(ImageError, match="too large"):
        load_image(path)
