"""A Hugging Face Space folder for a model: app.py, requirements, the model file, examples.

``imgclf export MODEL --space FOLDER``; ``python app.py`` in the folder runs the same web
app locally.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

from imgclf._files import atomic_path, write_text
from imgclf._version import __version__
from imgclf.errors import ImgclfError
from imgclf.inference.predictor import Predictor
from imgclf.modelfile import load_model, save_model

_APP = '''"""Gradio app for this model, made by `imgclf export --space`. Run: python app.py"""

from imgclf.serve.gradio_app import build_app

demo = build_app("model.imgclf", examples="examples")

if __name__ == "__main__":
    demo.launch(max_file_size="10mb")  # imgclf serve's upload limit
'''

_README = """---
title: {title}
emoji: 🔎
colorFrom: blue
colorTo: green
sdk: gradio
sdk_version: {gradio_version}
app_file: app.py
pinned: false
license: apache-2.0
---

# {title}

An image classifier made with [imgclf](https://pypi.org/project/imgclf/): {backbone} fine-tuned
on {count} classes ({classes}). Validation accuracy: {accuracy}.

Run it locally: `pip install -r requirements.txt && python app.py`. The folder carries its
own copy of imgclf {version} (`imgclf/`); requirements.txt pins what it needs.
"""


def export_space(model: str | os.PathLike, folder: str | os.PathLike, *,
                 examples: Sequence[str | os.PathLike] = ()) -> Path:
    """A folder ready to push to a Hugging Face Space: app.py, requirements.txt, the model
    file, example pictures and a README with the Spaces YAML header. ``python app.py`` in it
    runs the same web app locally.
    """
    predictor = Predictor.load(model, runtime="torch")  # fails early on a bad model file
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # published: the paths of the training pictures (explanations' nearest pictures) stay home
    tensors, info = load_model(model)
    save_model(folder / "model.imgclf", tensors, dataclasses.replace(info, bank_pictures=()))
    write_text(folder / "app.py", _APP)
    gradio_version = _installed_version("gradio") or "5.0.0"
    # imgclf itself travels in the folder (no package index has to have this version), and
    # requirements.txt pins what it needs to serve to the versions it was made with
    _vendor_imgclf(folder / "imgclf")
    write_text(folder / "requirements.txt", "".join(
        f"{name}\n" for name in serving_requirements()))
    if examples:
        (folder / "examples").mkdir(exist_ok=True)
        for example in examples:
            _copy(example, folder / "examples" / Path(example).name)
    accuracy = predictor.info.metrics.get("accuracy")
    write_text(folder / "README.md", _README.format(
        title=f"{' vs '.join(predictor.classes[:3])} classifier"[:60],
        gradio_version=gradio_version, backbone=predictor.info.backbone,
        count=len(predictor.classes), classes=", ".join(predictor.classes[:10]),
        accuracy=f"{accuracy:.1%}" if accuracy is not None else "not recorded",
        version=__version__))
    return folder


def serving_requirements() -> list[str]:
    """What imgclf needs to serve a model: its own dependencies and its serve extra, pinned
    to the installed versions ("torch==2.14.1"), or as it asks where one is not installed."""
    try:
        wanted = requires("imgclf") or []
    except PackageNotFoundError:  # run from a source tree that was never installed
        raise ImgclfError("imgclf is not installed (pip install -e .), so its requirements "
                          "are not known: the Space folder cannot list them.") from None
    lines = []
    for requirement in wanted:
        spec, _, marker = requirement.partition(";")
        if "extra" in marker and '"serve"' not in marker.replace("'", '"'):
            continue
        name = re.split(r"[\s<>=!~\[]", spec.strip(), maxsplit=1)[0]
        version = _installed_version(name)
        # 2.14.1+cpu -> 2.14.1: a local label (a PyTorch index's build) is on no public index
        line = f"{name}=={version.split('+')[0]}" if version else spec.strip()
        kept = marker.strip() if "extra" not in marker else ""
        line += f"; {kept}" if kept else ""
        if line not in lines:
            lines.append(line)
    return lines


def _vendor_imgclf(target: Path) -> None:
    """Copy the imgclf package that is running into target (no caches, no compiled files)."""
    source = Path(__file__).resolve().parents[1]  # the imgclf package folder
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _copy(source: str | os.PathLike, target: Path) -> None:
    with atomic_path(target) as temporary:
        shutil.copyfile(source, temporary)


def _installed_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None
