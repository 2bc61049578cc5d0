"""Files that are no pictures however they are named: a 3 GB sparse file, a device, a pipe.
Each is skipped with its reason before a byte of it is read, never read whole and never
passed over without a word (issue #27, items 11 and 12)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imgclf import ImageData, ImageError, load_image
from imgclf.cli import main
from imgclf.data.decoding import MAX_FILE_BYTES
from imgclf.data.sources import find_images


def _sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as handle:
        handle.truncate(size)  # no block is written: reading it whole would take seconds
    return path


def test_a_huge_file_is_refused_by_its_size_without_reading(colours, monkeypatch):
    from imgclf.data import decoding
    from imgclf.data.verification import verify_files

    big = _sparse(colours / "red" / "big.jpg", 3 * 1024 ** 3)
    opened = []
    monkeypatch.setattr(decoding, "open", lambda *arguments, **options: opened.append(1),
                        raising=False)  # the reader's own open(): it must not be reached
    with pytest.raises(ImageError, match="too large to be a picture"):
        load_image(big)
    assert opened == [] and MAX_FILE_BYTES < big.stat().st_size
    verdict = verify_files([big], copy_side=None, show_progress=False)[0]
    assert "too large" in verdict.error and verdict.sha256 == ""  # never read to be hashed
    data = ImageData.from_folder(colours, image_size=64, num_workers=0, verbose=False)
    assert "too large" in dict(data.report.skipped)[big]


def test_a_pipe_named_like_a_picture_is_listed_and_skipped_not_read(colours):
    pipe = colours / "blue" / "stream.jpg"
    os.mkfifo(pipe)  # reading it would wait forever for a writer
    assert pipe in find_images(colours)
    data = ImageData.from_folder(colours, image_size=64, num_workers=0, verbose=False)
    assert "not a regular file" in dict(data.report.skipped)[pipe]


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_predict_on_a_device_says_what_it_is(colour_model, capsys):
    _, model = colour_model
    assert main(["predict", str(model), "/dev/zero"]) == 1
    said = capsys.readouterr().err
    assert "/dev/zero: is not a regular file" in said and "No such file" not in said
