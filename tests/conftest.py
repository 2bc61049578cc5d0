"""Shared fixtures: generated pictures, and the real photos in ../shared where present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMGCLF_SHARED", REPO.parent / "shared")) / "datasets"


def shared_dataset(name: str) -> Path:
    """A folder of ../shared/datasets, or a skip saying where it was looked for."""
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"real-photo dataset not found at {path} (set IMGCLF_SHARED)")
    return path


@pytest.fixture
def make_picture(tmp_path):
    """Write a generated picture and return its path: make_picture("a.png", mode="RGBA")."""
    from PIL import Image

    def make(name: str, *, mode: str = "RGB", size=(64, 48), color=(200, 30, 30),
             folder: Path | None = None, **save_options) -> Path:
        target = (folder or tmp_path) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, color).convert(mode).save(target, **save_options)
        return target

    return make
