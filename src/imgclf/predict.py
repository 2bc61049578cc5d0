"""The one inference path: pictures in, class probabilities out (used by evaluate, export and serve)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgclf._progress import progress
from imgclf.config import InputConfig
from imgclf.data import ImageFiles, collate
from imgclf.errors import ImageError
from imgclf.images import ImageSource, load_image, to_rgb
from imgclf.transforms import eval_transform

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image
    from torch import nn


def default_workers() -> int:
    """DataLoader worker processes: one core is left for the network itself."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def predict_probabilities(
    network: nn.Module,
    paths: Sequence[str | os.PathLike],
    config: InputConfig,
    *,
    batch_size: int = 32,
    num_workers: int | None = None,
    show_progress: bool = True,
    description: str = "Predicting",
    resize: str = "crop",
    tta: bool = False,
) -> tuple[np.ndarray, list[ImageError]]:
    """Softmax probabilities for image files, in the order given.

    Files that cannot be read are skipped: their rows are NaN and their errors are returned.
    tta: test-time augmentation, the average of each picture and its mirror image.

    Returns:
        (probabilities of shape (len(paths), num_classes), errors)
    """
    import numpy as np
    import torch

    dataset = ImageFiles(paths, eval_transform(config, resize))
    workers = default_workers() if num_workers is None else num_workers
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate,
        persistent_workers=False,
    )
    rows: dict[int, np.ndarray] = {}
    errors: list[ImageError] = []
    # channels_last: 1.6x faster at batch 32 on a 2-core CPU (bench/backbone_speed.py).
    network.eval().to(memory_format=torch.channels_last)
    device = _device_of(network)
    batches = progress(loader, total=len(dataset), description=description,
                       enabled=show_progress, weight=lambda batch: _batch_len(batch))
    with torch.inference_mode():
        for images, _targets, indices, batch_errors in batches:
            errors.extend(batch_errors)
            if images is None:
                continue
            images = images.to(device, memory_format=torch.channels_last)
            probabilities = network(images).float().softmax(dim=1)
            if tta:
                mirrored = network(images.flip(dims=[3])).float().softmax(dim=1)
                probabilities = (probabilities + mirrored) / 2
            probabilities = probabilities.cpu().numpy()
            for index, row in zip(indices.tolist(), probabilities):
                rows[index] = row
    width = next(iter(rows.values())).shape[0] if rows else 0
    result = np.full((len(dataset), width), np.nan, dtype=np.float32)
    for index, row in rows.items():
        result[index] = row
    return result, errors


def _device_of(network: nn.Module):
    """The device a network's weights are on (inputs must go there too)."""
    return next(network.parameters()).device


def _batch_len(batch) -> int:
    images, _targets, _indices, errors = batch
    return (0 if images is None else len(images)) + len(errors)


# --- Predictor: a model file -> labels ------------------------------------------------------


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
    """The one inference path: a trained network, its classes and its preprocessing.

    Evaluation, export checks and the web app all predict through this class, so they
    cannot disagree.
    """

    def __init__(self, network: nn.Module, classes: Sequence[str], input: InputConfig, *,
                 resize: str = "crop", metadata: dict[str, Any] | None = None):
        self.network = network.eval()
        self.classes = list(classes)
        self.input = input
        self.resize = resize
        self.metadata = metadata or {}
        self.transform = eval_transform(input, resize)

    @classmethod
    def load(cls, path: str | os.PathLike, *, runtime: str = "torch") -> Predictor:
        """Load a model file written by ``Learner.export`` (never unpickles anything).

        runtime: "torch", or "onnx" for onnxruntime (faster on CPU; the ONNX file is made
        next to the model file on first use, checked against PyTorch). An ``.onnx`` file
        written by ``export_onnx`` loads with runtime="onnx" directly.

        Example:
            >>> predictor = Predictor.load("models/ants-vs-bees/model.imgclf")
        """
        import json

        from imgclf.model import network_from_tensors
        from imgclf.modelfile import load_tensors

        path = Path(path)
        if runtime not in ("torch", "onnx"):
            raise ValueError(f"runtime must be 'torch' or 'onnx', not {runtime!r}")
        if path.suffix == ".onnx":
            from imgclf.export import OnnxNetwork

            session = OnnxNetwork(path)
            meta = session.metadata
            metadata = {"classes": json.loads(meta["imgclf_classes"]),
                        "input": json.loads(meta["imgclf_input"]),
                        "resize": meta.get("imgclf_resize", "crop"),
                        "backbone": meta.get("imgclf_backbone")}
            return cls(_OnnxModule(session), metadata["classes"],
                       InputConfig.from_dict(metadata["input"]), resize=metadata["resize"],
                       metadata=metadata)
        tensors, metadata = load_tensors(path)
        if runtime == "onnx":
            onnx_path = _onnx_beside(path)
            predictor = cls.load(onnx_path, runtime="onnx")
            predictor.metadata = metadata
            return predictor
        network = network_from_tensors(tensors, metadata, str(path))
        return cls(network, metadata["classes"], InputConfig.from_dict(metadata["input"]),
                   resize=metadata.get("resize", "crop"), metadata=metadata)

    def predict(self, image: ImageSource | Image.Image) -> Prediction:
        """Label one picture: a path, bytes, an open file or a PIL image.

        Raises:
            ImageError: the picture cannot be read.
        """
        import torch

        picture = image if _is_pil(image) else load_image(image)
        batch = self.transform(to_rgb(picture)).unsqueeze(0)
        with torch.inference_mode():
            batch = batch.to(_device_of(self.network), memory_format=torch.channels_last)
            row = self.network(batch).float().softmax(dim=1)[0].cpu().numpy()
        return self._prediction(row)

    def predict_batch(self, paths: Sequence[str | os.PathLike], *, batch_size: int = 32,
                      show_progress: bool = True) -> list[Prediction | ImageError]:
        """Predictions for many files, in order; an unreadable file gives its ImageError."""
        import numpy as np

        probabilities, errors = predict_probabilities(
            self.network, paths, self.input, batch_size=batch_size, resize=self.resize,
            show_progress=show_progress)
        by_source = {error.source: error for error in errors}
        return [by_source.get(str(path), ImageError(str(path), "could not be read"))
                if np.isnan(row).any() else self._prediction(row)
                for path, row in zip(paths, probabilities)]

    def probabilities(self, paths: Sequence[str | os.PathLike], **options):
        """Class probabilities for files as an array (NaN rows for unreadable files)."""
        return predict_probabilities(self.network, paths, self.input, resize=self.resize,
                                     **options)

    def _prediction(self, row) -> Prediction:
        index = int(row.argmax())
        return Prediction(label=self.classes[index], index=index,
                          probabilities={c: float(p) for c, p in zip(self.classes, row)})


def _onnx_beside(path: Path) -> Path:
    """The ONNX file next to a model file, exported (and checked) if missing or older."""
    from imgclf.export import export_onnx

    onnx_path = path.with_suffix(".onnx")
    if not onnx_path.exists() or onnx_path.stat().st_mtime < path.stat().st_mtime:
        export_onnx(path, onnx_path)
    return onnx_path


def _onnx_module_class():
    import torch

    class OnnxModule(torch.nn.Module):
        """onnxruntime behind the torch interface the inference loop expects.

        The ONNX graph outputs probabilities; returning their logarithm makes the loop's
        softmax give them back unchanged.
        """

        def __init__(self, session):
            super().__init__()
            self.session = session
            self.register_buffer("anchor", torch.zeros(1))  # gives the loop a device to use

        def parameters(self, recurse: bool = True):
            yield self.anchor

        def forward(self, images):
            import numpy as np

            array = np.ascontiguousarray(images.detach().cpu().numpy())
            return torch.from_numpy(self.session(array)).clamp_min(1e-30).log()

    return OnnxModule


def _OnnxModule(session):  # noqa: N802 - builds the class lazily so torch loads on use only
    return _onnx_module_class()(session)


def _is_pil(value: Any) -> bool:
    from PIL import Image

    return isinstance(value, Image.Image)
