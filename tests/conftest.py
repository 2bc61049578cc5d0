"""Shared fixtures: generated pictures, and the real photos in ../shared where present."""

from __future__ import annotations

import inspect
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


@pytest.fixture(scope="session")
def shared_runtimes(tmp_path_factory):
    """One folder of onnxruntime graphs for the whole run."""
    return tmp_path_factory.mktemp("imgclf-runtimes")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch, request, shared_runtimes):
    """Every test gets its own cache (verdicts, views, embeddings), so no test sees another's.

    Its onnxruntime graphs are the run's, as a user's cache keeps them across runs: they are
    keyed by the weights and size they were built for, and building one (export, then a check
    against PyTorch) is seconds a test would otherwise spend again and again. A test that asks
    for this fixture by name looks into the cache, and gets all of it to itself.
    """
    cache = tmp_path_factory.mktemp("imgclf-cache")
    if "private_cache" not in inspect.signature(request.function).parameters:
        (cache / "runtimes").symlink_to(shared_runtimes, target_is_directory=True)
    monkeypatch.setenv("IMGCLF_CACHE", str(cache))
    return cache


@pytest.fixture
def make_photo(tmp_path):
    """Write a distinct noisy photo (no two alike): make_photo("cats/1.jpg", size=(80, 60))."""
    import numpy as np
    from PIL import Image

    counter = iter(range(1_000_000))

    def make(relative: str, *, size=(80, 60), root: Path | None = None, tint=(0, 0, 0),
             noise: int = 200) -> Path:
        target = (root or tmp_path) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        generator = np.random.default_rng(next(counter))
        pixels = generator.integers(0, noise, (size[1], size[0], 3)) + np.array(tint)
        Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).save(target, quality=90)
        return target

    return make


@pytest.fixture
def class_folders(make_photo, tmp_path):
    """tmp_path/data/{cats,dogs}/*.jpg with 10 photos each; returns the data folder."""
    for label in ("cats", "dogs"):
        for index in range(10):
            make_photo(f"data/{label}/{label}_{index}.jpg")
    return tmp_path / "data"


@pytest.fixture
def colours(make_photo, tmp_path):
    """tmp_path/colours/{red,blue}: 12 reddish and 12 bluish noise photos, easy to learn."""
    for label, tint in (("red", (180, 20, 20)), ("blue", (20, 20, 180))):
        for index in range(12):
            make_photo(f"colours/{label}/{index}.jpg", size=(72, 72), tint=tint, noise=70)
    return tmp_path / "colours"


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory):
    """(photos folder, model file): a probe model on 64-pixel red and blue photos."""
    from tests.serving import colour_photos, probe_model

    photos = colour_photos(tmp_path_factory.mktemp("photos"))
    return photos, probe_model(photos, tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def chromium():
    """Debian's headless Chromium and playwright for the browser tests, or a skip saying why."""
    import shutil

    path = shutil.which("chromium")
    if path is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); "
                    ".ci/run installs it where it can")
    pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
    pytest.importorskip("gradio", reason="needs the serve extra")
    return path
