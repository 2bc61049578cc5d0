"""Export a model file: to ONNX (checked against PyTorch), or as a ready Hugging Face Space."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imgclf import inference
from imgclf._files import atomic_path, write_text
from imgclf.errors import ImgclfError
from imgclf.onnx_runtime import OnnxModule, OnnxNetwork, require

# Largest difference of any probability between PyTorch and onnxruntime that export accepts.
MATCH_TOLERANCE = 1e-4


def export_onnx(model: str | os.PathLike, path: str | os.PathLike, *,
                check_images: Sequence[str | os.PathLike] = (), opset: int = 18,
                int8: bool = False) -> dict:
    """Write an ONNX file with a dynamic batch axis and the preprocessing in its metadata.

    The exported network takes normalised pictures (N, 3, size, size) and returns class
    probabilities. Before returning, export runs both PyTorch and onnxruntime through the one
    forward loop, as Predictor does, on check_images (or on generated pictures when none are
    given) and fails if any probability differs by more than MATCH_TOLERANCE.

    int8: write the int8 graph ``imgclf.quantize`` made and checked against float on the
    validation pictures instead (its check is the one that counts; an error says what to
    run when there is none).

    Returns:
        {"path", "max_difference", "checked_images"}; with int8, {"path", "int8_check"}

    Example:
        >>> export_onnx("models/ants/model.imgclf", "ants.onnx", check_images=["ant.jpg"])
    """
    import torch

    from imgclf.predict import Predictor

    require("onnx")
    require("onnxruntime")
    if int8:
        if Path(model).suffix == ".onnx":
            raise ImgclfError("--int8 exports from a .imgclf model file, not an ONNX file.")
        return _export_int8(model, Path(path))
    predictor = Predictor.load(model, runtime="torch")
    network = _Exported(predictor.network).eval().to(memory_format=torch.contiguous_format)
    size = predictor.input.image_size
    example = torch.randn(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=1024)
    outputs = ["probabilities"] + (["outlier"] if predictor.has_detector else [])
    pictures = [(tensor, -1, index)
                for index, tensor in enumerate(_check_batch(predictor, check_images))]
    # written beside the target and moved there only once checked: a failed export leaves
    # any earlier file as it was
    with atomic_path(path) as temporary:
        torch.onnx.export(network, (example,), str(temporary), input_names=["images"],
                          output_names=outputs, opset_version=opset, dynamo=True,
                          dynamic_shapes={"images": {0: batch}}, external_data=False)
        _write_metadata(temporary, predictor)
        expected = inference.run(predictor.network, pictures, num_workers=0)
        actual = inference.run(OnnxModule(OnnxNetwork(temporary)), pictures, num_workers=0)
        difference = float(np.abs(expected.probabilities - actual.probabilities).max())
        if predictor.has_detector:  # the outlier score is computed in the graph too
            difference = max(difference, float(np.abs(expected.outlier - actual.outlier).max()))
        if difference > MATCH_TOLERANCE:
            raise ImgclfError(f"ONNX output differs from PyTorch by {difference:.2e} (more "
                              f"than {MATCH_TOLERANCE}); the file was not written.")
    return {"path": str(path), "max_difference": difference, "checked_images": len(pictures)}


def _export_int8(model: str | os.PathLike, path: Path) -> dict:
    """The checked int8 graph with the metadata load_onnx reads."""
    from imgclf.onnx_runtime import read_int8_check
    from imgclf.predict import Predictor

    predictor = Predictor.load(model, int8=True)  # fails with what to run when unchecked
    source = predictor.network.onnx.path
    with atomic_path(path) as temporary:
        shutil.copyfile(source, temporary)
        _write_metadata(temporary, predictor, int8=True)
    return {"path": str(path),
            "int8_check": read_int8_check(source.with_name(source.name.replace(".int8", "")))}


def _Exported(network):  # noqa: N802 - builds the class lazily: torch loads on use only
    """The classifier as exported: probabilities, and outlier scores when it has a detector."""
    import torch

    class Exported(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, images):
            logits, _, outlier = self.inner.infer(images)
            probabilities = logits.softmax(dim=1)
            return probabilities if outlier is None else (probabilities, outlier)

    return Exported(network)


def _check_batch(predictor, images: Sequence[str | os.PathLike]):
    import torch

    from imgclf.images import load_image

    if images:
        return torch.stack([predictor.transform(load_image(p)) for p in images])
    generator = torch.Generator().manual_seed(0)
    size = predictor.input.image_size
    return torch.randn(4, 3, size, size, generator=generator)


def _write_metadata(path: Path, predictor, *, int8: bool = False) -> None:
    import onnx

    from imgclf.predict import outlier_calibration

    proto = onnx.load(str(path))
    values = {
        "imgclf_classes": json.dumps(predictor.classes),
        "imgclf_input": json.dumps(predictor.input.to_dict()),
        "imgclf_backbone": predictor.info.backbone,
        "imgclf_preprocessing": (
            "RGB, shorter side resized to input.image_size / input.crop_fraction "
            "(input.resize 'crop'; 'squish' stretches, 'pad' fits with black borders), center "
            "crop to image_size, scaled to 0..1, then (x - mean) / std"),
    }
    if predictor.has_detector:  # the threshold in use: an int8 graph has its own
        values["imgclf_unknown"] = json.dumps({
            "config": {**predictor.info.unknown.to_dict(), "threshold": predictor.threshold},
            "calibration": outlier_calibration(predictor.network).tolist()})
    if int8:
        values["imgclf_int8"] = "true"
    del proto.metadata_props[:]
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


# --- Hugging Face Space -------------------------------------------------------------------

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
    from imgclf._version import __version__
    from imgclf.predict import Predictor

    predictor = Predictor.load(model, runtime="torch")  # fails early on a bad model file
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _copy(model, folder / "model.imgclf")
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
    import re
    from importlib.metadata import PackageNotFoundError, requires

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
    import imgclf

    source = Path(imgclf.__file__).parent
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _copy(source: str | os.PathLike, target: Path) -> None:
    with atomic_path(target) as temporary:
        shutil.copyfile(source, temporary)


def _installed_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
