"""Export a model file: to ONNX (checked against PyTorch), or as a ready Hugging Face Space."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imgclf._files import atomic_path
from imgclf.errors import ImgclfError
from imgclf.inference import loop
from imgclf.inference.predictor import Predictor, outlier_calibration
from imgclf.inference.runtimes import OnnxNetwork, export_graph, read_int8_check, require

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
    # a multi-label graph's output has its own name, so a reader that takes "probabilities"
    # for a softmax fails instead of misreading it
    outputs = (["label_probabilities" if predictor.multi_label else "probabilities"]
               + (["outlier"] if predictor.has_detector else []))
    pictures = [(tensor, -1, index)
                for index, tensor in enumerate(_check_batch(predictor, check_images))]
    # written beside the target and moved there only once checked: a failed export leaves
    # any earlier file as it was
    with atomic_path(path) as temporary:
        export_graph(network, example, temporary, output_names=outputs, opset=opset)
        _write_metadata(temporary, predictor)
        expected = loop.run(predictor.network, pictures, num_workers=0)
        actual = loop.run(OnnxNetwork(temporary), pictures, num_workers=0)
        difference = float(np.abs(expected.probabilities - actual.probabilities).max())
        if predictor.has_detector:  # the outlier score is computed in the graph too
            difference = max(difference, float(np.abs(expected.outlier - actual.outlier).max()))
        if difference > MATCH_TOLERANCE:
            raise ImgclfError(f"ONNX output differs from PyTorch by {difference:.2e} (more "
                              f"than {MATCH_TOLERANCE}); the file was not written.")
    return {"path": str(path), "max_difference": difference, "checked_images": len(pictures)}


def _export_int8(model: str | os.PathLike, path: Path) -> dict:
    """The checked int8 graph with the metadata load_onnx reads."""
    predictor = Predictor.load(model, int8=True)  # fails with what to run when unchecked
    source = predictor.network.path
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
            probabilities = (logits.sigmoid() if getattr(self.inner, "multi_label", False)
                             else logits.softmax(dim=1))
            return probabilities if outlier is None else (probabilities, outlier)

    return Exported(network)


def _check_batch(predictor, images: Sequence[str | os.PathLike]):
    import torch

    if images:
        return torch.stack([torch.from_numpy(predictor.transform.read(p)) for p in images])
    generator = torch.Generator().manual_seed(0)
    size = predictor.input.image_size
    return torch.randn(4, 3, size, size, generator=generator)


def _write_metadata(path: Path, predictor, *, int8: bool = False) -> None:
    import onnx

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
    if predictor.multi_label:  # sigmoid outputs, and the thresholds in use
        values["imgclf_multi_label"] = "true"
        values["imgclf_thresholds"] = json.dumps(predictor.thresholds.tolist())
    if int8:
        values["imgclf_int8"] = "true"
    del proto.metadata_props[:]
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
