"""Predictor: a model file (or a trained network) -> labels, through the one forward loop.

Evaluation, export checks, the CLI and the web app all predict through this class, and it
runs every picture through ``inference.batches``, the loop training validates with.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgclf import inference
from imgclf.errors import ImageError, ModelFileError
from imgclf.modelfile import ModelInfo
from imgclf.transforms import eval_transform

if TYPE_CHECKING:
    from PIL import Image
    from torch import nn

    from imgclf.images import ImageSource

RUNTIMES = ("torch", "onnx")


@dataclass(frozen=True)
class Prediction:
    """One picture's result: the label, its class index and every class's probability.

    Example:
        >>> prediction = Predictor.load("ants.imgclf").predict("ant.jpg")
        >>> prediction.label, prediction.index, round(prediction.probability, 3)
        ('ants', 0, 0.998)
    """

    label: str
    index: int
    probabilities: dict[str, float]

    @property
    def probability(self) -> float:
        return self.probabilities[self.label]

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The k most likely classes with their probabilities, best first."""
        return sorted(self.probabilities.items(), key=lambda pair: -pair[1])[:k]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "index": self.index, "probabilities": self.probabilities}


class Predictor:
    """A trained network, what its model file says about it, and its preprocessing.

    Example:
        >>> predictor = Predictor.load("models/ants/model.imgclf")
        >>> predictor.predict("ant.jpg").label
        'ants'
    """

    def __init__(self, network: nn.Module, info: ModelInfo):
        import torch

        # channels_last: 1.6x faster at batch 32 on a 2-core CPU (bench/backbone_speed.py)
        self.network = network.eval().to(memory_format=torch.channels_last)
        self.info = info
        self.classes = list(info.classes)
        self.input = info.input
        self.transform = eval_transform(info.input)

    @classmethod
    def load(cls, path: str | os.PathLike, *, runtime: str = "torch") -> Predictor:
        """Load a model file written by ``Learner.export`` (never unpickles anything).

        runtime: "torch", or "onnx" for onnxruntime: give the ``.onnx`` file written by
        ``export_onnx`` (``imgclf export MODEL --onnx FILE``), or a model file with that
        ONNX file beside it under the same name.

        Example:
            >>> predictor = Predictor.load("models/ants-vs-bees/model.imgclf")
        """
        from imgclf.model import network_from_tensors
        from imgclf.modelfile import load_model

        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, not {runtime!r}")
        path = Path(path)
        if path.suffix == ".onnx":
            from imgclf.onnx_runtime import load_onnx

            return cls(*load_onnx(path))
        tensors, info = load_model(path)
        if runtime == "onnx":
            return cls._onnx_beside(path, info)
        return cls(network_from_tensors(tensors, info, str(path)), info)

    @classmethod
    def _onnx_beside(cls, path: Path, info: ModelInfo) -> Predictor:
        """The ONNX export next to a model file, with the model file's full information."""
        from imgclf.onnx_runtime import load_onnx

        onnx_path = path.with_suffix(".onnx")
        if not onnx_path.is_file() or onnx_path.stat().st_mtime < path.stat().st_mtime:
            state = "is older than the model file" if onnx_path.is_file() else "does not exist"
            raise ModelFileError(
                f"{onnx_path} {state}. Export it first (checked against PyTorch): "
                f"imgclf export {path} --onnx {onnx_path}")
        network, onnx_info = load_onnx(onnx_path)
        if (onnx_info.classes, onnx_info.input) != (info.classes, info.input):
            raise ModelFileError(f"{onnx_path} was exported from another model than {path}: "
                                 f"export it again.")
        return cls(network, info)

    def outputs(self, pictures: Sequence[ImageSource | Image.Image], *, batch_size: int = 32,
                tta: bool = False, embeddings: bool = False, show_progress: bool = False,
                description: str = "Predicting", num_workers: int | None = None
                ) -> inference.Outputs:
        """Probabilities (and embeddings) for pictures: the loop every other method uses.

        Unreadable pictures get NaN rows and their ImageError in ``errors``.
        """
        return inference.run(self.network, pictures, transform=self.transform,
                             batch_size=batch_size, tta=tta, embeddings=embeddings,
                             show_progress=show_progress, description=description,
                             num_workers=num_workers)

    def predict(self, image: ImageSource | Image.Image) -> Prediction:
        """Label one picture: a path, bytes, an open file or a PIL image.

        Raises:
            ImageError: the picture cannot be read.
        """
        result = self.outputs([image])
        if result.errors:
            raise result.errors[0]
        return self._prediction(result.probabilities[0])

    def predict_batch(self, paths: Sequence[str | os.PathLike], *, batch_size: int = 32,
                      show_progress: bool = True) -> list[Prediction | ImageError]:
        """Predictions for many files, in order; an unreadable file gives its ImageError."""
        result = self.outputs(paths, batch_size=batch_size, show_progress=show_progress)
        by_source = {error.source: error for error in result.errors}
        return [self._prediction(row) if ok else
                by_source.get(str(path), ImageError(str(path), "could not be read"))
                for path, row, ok in zip(paths, result.probabilities, result.ok)]

    def _prediction(self, row) -> Prediction:
        index = int(row.argmax())
        return Prediction(label=self.classes[index], index=index,
                          probabilities={c: float(p) for c, p in zip(self.classes, row)})


def load(path: str | os.PathLike, *, runtime: str = "torch") -> Predictor:
    """Load a model file for prediction (like fastai's load_learner, minus the pickle).

    Example:
        >>> model = imgclf.load("models/ants/model.imgclf")
        >>> model.predict("ant.jpg").label
        'ants'
    """
    return Predictor.load(path, runtime=runtime)
