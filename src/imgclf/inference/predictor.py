"""Predictor: a model file (or a trained network) -> labels, through the one forward loop.

Evaluation, export checks, the CLI and the web app all predict through this class, and it
runs every picture through ``loop.batches``, the loop training validates with.

A model file loaded before runs through its remembered onnxruntime graph (graphs.py) without
importing torch; inference.runtimes and model (which import it) are imported only where a
network is built.
"""

from __future__ import annotations

import numbers
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgclf._files import known_sha256
from imgclf.calibration import DEFAULT_THRESHOLD, scores_beyond, threshold_for, too_few_beyond
from imgclf.config import RUNTIMES, InferenceConfig
from imgclf.data.datasets import ImageFiles
from imgclf.data.decoding import ImageSource, load_image, to_rgb
from imgclf.data.transforms import eval_transform
from imgclf.errors import ImageError, ImgclfError, ImgclfWarning, ModelFileError
from imgclf.inference import loop
from imgclf.inference.explain import NEIGHBOURS, Explanation, explain_array
from imgclf.inference.graphs import OnnxNetwork, remember_graph, remembered_graph, require
from imgclf.inference.prediction import UNKNOWN, Prediction, Predictions, source_name
from imgclf.modelfile import ModelInfo, load_model, read_info

if TYPE_CHECKING:
    from PIL import Image
    from torch import nn

# Pictures in predict_each's first batch: its rows are printed after a few pictures, not a
# whole batch (the time from `imgclf predict` to its first row).
FIRST_BATCH = 4
# The detector's calibration scores in a model file (model.MODEL_PREFIX + "detector.")
_CALIBRATION = "model.detector.calibration"


class Predictor:
    """A trained network, what its model file says about it, and its preprocessing.

    Example:
        >>> predictor = Predictor.load("models/ants/model.imgclf")
        >>> predictor.predict("ant.jpg").label
        'ants'
    """

    def __init__(self, network: nn.Module | OnnxNetwork, info: ModelInfo, *,
                 acceptance: float | None = None, source: str | os.PathLike | None = None,
                 thresholds: float | dict[str, float] | None = None):
        # the model file it came from: explain() rebuilds the PyTorch network from it when
        # onnxruntime runs this one
        self.source = Path(source) if source is not None else None
        self._torch_network: nn.Module | None = None
        self._rebuilding = threading.Lock()  # a server's threads build it once
        if isinstance(network, OnnxNetwork):  # onnxruntime runs it: predicting needs no torch
            self.network = network
        else:
            import torch

            # channels_last: 1.6x faster at batch 32 on a 2-core CPU (bench/backbone_speed.py)
            self.network = network.eval().to(memory_format=torch.channels_last)
        self.info = info
        self.classes = list(info.classes)
        self.input = info.input
        self.transform = eval_transform(info.input)
        self.threshold = info.unknown.threshold if info.unknown else float("inf")
        self.acceptance = info.unknown.acceptance if info.unknown else None
        if acceptance is not None:
            self.set_acceptance(acceptance)
        # multi-label: independent probabilities, and each label's decision threshold
        self.multi_label = info.multi_label
        self.network.multi_label = info.multi_label  # the forward loop reads it
        self.thresholds = np.asarray(info.thresholds or [DEFAULT_THRESHOLD] * len(self.classes),
                                     dtype=np.float64)
        if thresholds is not None:
            self.set_thresholds(thresholds)

    def set_thresholds(self, thresholds: float | dict[str, float]) -> None:
        """A multi-label model's decision thresholds: one probability for every label, or
        {label: probability} for some (the others keep theirs).

        Example:
            >>> model.set_thresholds({"person": 0.3})   # say "person" more readily
        """
        if not self.multi_label:
            raise ImgclfError("Thresholds are for multi-label models: this one names one class "
                              "per picture (its unknown answer moves with acceptance).")
        values = (dict.fromkeys(self.classes, thresholds) if not isinstance(thresholds, dict)
                  else thresholds)
        unknown = sorted(set(values) - set(self.classes))
        if unknown:
            raise ImgclfError(f"No such label: {', '.join(unknown)}. The labels are "
                              f"{', '.join(self.classes)}.")
        for label, value in values.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
                    0 <= value < 1):
                raise ImgclfError(f"A threshold is a probability from 0 up to (not including) "
                                  f"1, not {value!r} (label {label}).")
            self.thresholds[self.classes.index(label)] = float(value)

    @property
    def has_detector(self) -> bool:
        """Whether this model can answer "unknown" (models from before imgclf 0.2 cannot)."""
        return self.info.unknown is not None

    def set_acceptance(self, acceptance: float) -> None:
        """Move the "unknown" threshold so that this share of in-domain pictures is accepted
        (the model file keeps the in-domain scores it was calibrated on)."""
        if not self.has_detector:
            raise ModelFileError("This model file has no detector for unknown pictures (it was "
                                 "made before imgclf 0.2): train it again to get one.")
        calibration = outlier_calibration(self.network)
        self.threshold = threshold_for(calibration, acceptance)
        self.acceptance = acceptance
        trained_at = self.info.unknown.acceptance if self.info.unknown else None
        # the acceptance it was trained at placed the threshold as well as its data allowed
        if acceptance not in (trained_at, 1) and too_few_beyond(len(calibration), acceptance):
            import warnings

            warnings.warn(
                f"Accepting {acceptance:.1%} leaves {scores_beyond(len(calibration), acceptance)} "
                f"of this model's {len(calibration)} calibration pictures above the unknown "
                f"threshold, too few to place it well (the share accepted may be off by a few "
                f"points): train with more validation pictures, or choose a lower acceptance.",
                ImgclfWarning, stacklevel=2)

    @classmethod
    def load(cls, path: str | os.PathLike, *, runtime: str = InferenceConfig.runtime,
             int8: bool = False, acceptance: float | None = None,
             thresholds: float | dict[str, float] | None = None) -> Predictor:
        """Load a model file written by ``Learner.export`` (never unpickles anything).

        runtime: "auto" (onnxruntime where installed, on the CPU: about 2.5x PyTorch's speed;
        built once per model file and cached), "onnx" (onnxruntime, or an error saying how
        to install it) or "torch". A ``.onnx`` file written by ``export_onnx`` is run by
        onnxruntime whatever this says.
        int8: run the int8 graph that ``imgclf.quantize`` made and checked for this model
        (2.1-2.3x float onnxruntime at batch 32 on a VNNI CPU); an error saying what to run
        when it has not been checked, or was refused.
        acceptance: the share of in-domain pictures the "unknown" detector accepts; default:
        the one the model was calibrated at (0.98 unless trained otherwise; 0.95 for
        model files made before imgclf chose 0.98).
        thresholds: a multi-label model's decision thresholds instead of the ones it chose
        (set_thresholds: one probability for all labels, or {label: probability}).

        Example:
            >>> predictor = Predictor.load("models/ants-vs-bees/model.imgclf")
        """
        predictor = cls._load(path, runtime=runtime, int8=int8, acceptance=acceptance)
        if thresholds is not None:
            predictor.set_thresholds(thresholds)
        return predictor

    @classmethod
    def _load(cls, path: str | os.PathLike, *, runtime: str, int8: bool,
              acceptance: float | None) -> Predictor:
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, not {runtime!r}")
        path = Path(path)
        if path.suffix == ".onnx" and int8:
            raise ModelFileError(f"{path} is an ONNX file: it runs as it was exported. Give "
                                 "the .imgclf model with --int8, or export its int8 graph "
                                 "(imgclf export MODEL --onnx FILE --int8).")
        if path.suffix == ".onnx":
            from imgclf.inference.runtimes import load_onnx

            return cls(*load_onnx(path), acceptance=acceptance)
        rememberable = not int8 and runtime != "torch"
        if rememberable:
            remembered = cls._remembered(path, acceptance)
            if remembered is not None:
                return remembered
        # the hash of the bytes about to be read: the graph is remembered for them alone
        digest = known_sha256(path) if rememberable and path.is_file() else None
        tensors, info = load_model(path)
        from imgclf.inference.runtimes import accelerated, int8_module
        from imgclf.model import network_from_tensors

        network = network_from_tensors(tensors, info, str(path))
        if int8:  # the threshold is set on int8's own scores, at the model's acceptance
            return cls(int8_module(network, info.input.image_size), info,
                       acceptance=acceptance or (info.unknown.acceptance if info.unknown
                                                 else None), source=path)
        runner = accelerated(network, info.input.image_size, runtime=runtime)
        if isinstance(runner, OnnxNetwork) and digest is not None \
                and known_sha256(path) == digest:
            remember_graph(path, runner.path)
        return cls(runner, info, acceptance=acceptance, source=path)

    @classmethod
    def _remembered(cls, path: Path, acceptance: float | None) -> Predictor | None:
        """The model through the graph remembered for this exact file (graphs.py): no
        torch, no network built; None when there is none (the first load of a file)."""
        try:
            require("onnxruntime")
            digest = known_sha256(path) if path.is_file() else None
            graph = remembered_graph(path) if digest is not None else None
            if graph is None:
                return None
            info, calibration = read_info(path, _CALIBRATION)
            if known_sha256(path) != digest:  # replaced meanwhile: its graph may be another
                return None
            session = OnnxNetwork(graph)
        except (ImgclfError, OSError):  # the slow way says what is wrong, if anything
            return None
        if calibration is not None:
            session.calibration = calibration
        return cls(session, info, acceptance=acceptance, source=path)

    @property
    def runtime(self) -> str:
        """"onnx" when onnxruntime runs the network, "int8" when it runs a checked int8
        graph, else "torch"."""
        if not isinstance(self.network, OnnxNetwork):
            return "torch"
        return "int8" if self.network.int8 else "onnx"

    def outputs(self, pictures: Sequence[ImageSource | Image.Image], *,
                batch_size: int = InferenceConfig.batch_size,
                tta: bool = False, embeddings: bool = False, show_progress: bool = False,
                description: str = "Predicting", num_workers: int | None = None
                ) -> loop.Outputs:
        """Probabilities (and embeddings) for pictures: the loop every other method uses.

        Unreadable pictures get NaN rows and their ImageError in ``errors``.
        """
        return loop.run(self.network, pictures, transform=self.transform,
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
        return self._prediction(result, 0)

    def predict_batch(self, paths: Sequence[ImageSource | Image.Image], *,
                      batch_size: int = InferenceConfig.batch_size,
                      show_progress: bool = True, num_workers: int | None = None
                      ) -> Predictions:
        """Predictions for many pictures (files, bytes or PIL images), in order; an unreadable
        one gives its ImageError.

        num_workers: DataLoader processes that read files (default:
        data.datasets.inference_workers, none on 2 cores, where a thread reads ahead); 0 for
        pictures already in memory.
        """
        return Predictions([result for _position, result in self.predict_each(
            paths, batch_size=batch_size, show_progress=show_progress, num_workers=num_workers)],
            paths)

    def predict_each(self, paths: Sequence[ImageSource | Image.Image], *,
                     batch_size: int = InferenceConfig.batch_size, show_progress: bool = False,
                     num_workers: int | None = None
                     ) -> Iterator[tuple[int, Prediction | ImageError]]:
        """(position, Prediction or ImageError) for each picture in order, as soon as its batch
        is through the network: ``imgclf predict`` prints its first rows while the rest are
        read."""
        dataset = ImageFiles(paths, self.transform)
        waiting: dict[int, Prediction | ImageError] = {}
        following = 0
        for batch in loop.batches(self.network, dataset, batch_size=batch_size,
                                  num_workers=num_workers, show_progress=show_progress,
                                  first_batch=FIRST_BATCH):
            for row, position in enumerate(batch.indices):
                score = float(batch.outlier[row]) if batch.outlier is not None else None
                waiting[position] = self._answer(batch.probabilities[row], score)
            for error in batch.errors:
                waiting[error.index] = error
            while following in waiting:  # in input order, whatever order batches finish in
                yield following, waiting.pop(following)
                following += 1
        for position in range(following, len(paths)):  # none should be left; never silently
            yield position, waiting.pop(position, None) or ImageError(
                source_name(paths[position]), "could not be read")

    def predict_prepared(self, tensors: Sequence[Any]) -> list[Prediction]:
        """Predictions for pictures already read and transformed with ``self.transform``, as
        one batch (the server's queue: each request prepares its picture on its own thread).
        """
        items = [(tensor, -1, position) for position, tensor in enumerate(tensors)]
        result = loop.run(self.network, items, batch_size=max(1, len(items)),
                               num_workers=0)
        return [self._prediction(result, position) for position in range(len(items))]

    def explain(self, image: ImageSource | Image.Image, *, neighbours: int = NEIGHBOURS,
                index: int | None = None) -> Explanation:
        """Predict one picture and say why: a heatmap of where the evidence for its closest
        class lies (Grad-CAM, computed with PyTorch) and the training pictures nearest to it.

        index: the class whose evidence to show (default: the closest one); evaluation
        passes the class it predicted (with test-time augmentation, say).

        Raises:
            ImageError: the picture cannot be read.

        Example:
            >>> explanation = imgclf.load("ants.imgclf").explain("ant.jpg")
            >>> explanation.nearest[0].label
            'ants'
            >>> explanation.save("ant-why.png")
        """
        # read once, as predict_each reads a file (an open file cannot be read twice)
        picture = to_rgb(image) if hasattr(image, "getbands") else load_image(
            image, least=self.transform.decode_size)
        prediction = self.predict(picture)
        square = self.transform.square(picture)
        heatmap, nearest = explain_array(
            self.torch_network(), self.transform.finish(square), np.asarray(square),
            index=prediction.index if index is None else index, classes=self.classes,
            bank_pictures=self.info.bank_pictures, neighbours=neighbours)
        name = Path(image).name if isinstance(image, (str, os.PathLike)) else ""
        return Explanation(prediction=prediction, picture=np.asarray(square), heatmap=heatmap,
                           explained=self.classes[prediction.index if index is None
                                                  else index], nearest=nearest,
                           name=name)

    def torch_network(self) -> nn.Module:
        """The PyTorch network (explanations need its gradients): the one this Predictor
        runs, or, when onnxruntime runs it, the one rebuilt from its model file once."""
        if not isinstance(self.network, OnnxNetwork):
            return self.network
        with self._rebuilding:
            if self._torch_network is None:
                if self.source is None or self.source.suffix == ".onnx":
                    raise ModelFileError(
                        "Explaining a prediction needs the PyTorch network: load the .imgclf "
                        "model file (an exported .onnx file holds only the graph).")
                from imgclf.model import network_from_tensors

                tensors, info = load_model(self.source)
                if (info.classes, info.bank_pictures) != (self.info.classes,
                                                          self.info.bank_pictures):
                    raise ModelFileError(f"{self.source} has changed since it was loaded: "
                                         "load it again to explain its answers.")
                self._torch_network = network_from_tensors(tensors, info, str(self.source))
        return self._torch_network

    def _prediction(self, result: loop.Outputs, position: int) -> Prediction:
        return self._answer(result.probabilities[position], float(result.outlier[position])
                            if result.outlier is not None else None)

    def _answer(self, row, score: float | None) -> Prediction:
        index = int(row.argmax())
        unknown = score is not None and score > self.threshold
        labels = None
        if self.multi_label:
            labels = () if unknown else tuple(c for c, p, t in zip(self.classes, row,
                                                                   self.thresholds) if p >= t)
        label = UNKNOWN if unknown else (";".join(labels) if labels is not None
                                         else self.classes[index])
        return Prediction(label=label, index=index,
                          probabilities={c: float(p) for c, p in zip(self.classes, row)},
                          unknown=unknown, outlier_score=score, labels=labels)


def outlier_calibration(network: nn.Module | OnnxNetwork):
    """The in-domain outlier scores a network's detector was calibrated on (numpy)."""
    detector = getattr(network, "detector", None)
    if detector is not None:
        return detector.calibration.cpu().numpy()
    return getattr(network, "calibration", np.zeros(0, np.float32))  # an onnxruntime graph's


def load(path: str | os.PathLike, *, runtime: str = InferenceConfig.runtime, int8: bool = False,
         acceptance: float | None = None, thresholds: float | dict[str, float] | None = None
         ) -> Predictor:
    """Load a model file for prediction (like fastai's load_learner, minus the pickle).

    Example:
        >>> model = imgclf.load("models/ants/model.imgclf")
        >>> model.predict("ant.jpg").label
        'ants'
    """
    return Predictor.load(path, runtime=runtime, int8=int8, acceptance=acceptance,
                          thresholds=thresholds)
