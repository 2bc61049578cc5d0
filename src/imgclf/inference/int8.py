"""int8: onnxruntime's post-training static quantization of a trained model, checked against
float before anything uses it.

``quantize(model, data)`` calibrates on training pictures, runs the float and the int8 graphs
over the validation pictures, and keeps the int8 graph beside the float one in the runtime
cache only when it loses at most ``MAX_LOSS`` of accuracy; otherwise it is refused, with the
figures. ``Predictor.load(..., int8=True)``, ``imgclf predict/serve --int8`` and
``imgclf export --onnx FILE --int8`` then run the checked graph.

The backbone is quantized (QDQ, per channel), while the pooling, the head and the "unknown"
detector's distances stay in float; the detector's threshold is moved by the median change
int8 makes to the validation pictures' outlier scores. bench/throughput.py measures the speed (2.3-2.4x float onnxruntime at
batch 32 on a 2-core AVX-512 VNNI CPU; CPUs without VNNI gain less).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imgclf._files import atomic_path, file_sha256, write_json
from imgclf._progress import status
from imgclf.errors import ImageError, ImgclfError
from imgclf.inference import loop
from imgclf.inference.predictor import Predictor, outlier_calibration
from imgclf.inference.runtimes import (OnnxNetwork, cached_graph,
                                       int8_path, read_int8_check, require)

if TYPE_CHECKING:
    from imgclf.data.imagedata import ImageData

# Largest accuracy int8 may lose against float on the validation pictures (0.5 point).
MAX_LOSS = 0.005
# Training pictures the activation ranges are calibrated on (seeded choice): 64 gives ranges
# within a few percent of those from every hymenoptera training picture.
CALIBRATION_PICTURES = 64


@dataclass(frozen=True)
class Int8Check:
    """What quantize found: float and int8 accuracy (multi-label: exact match) on the same
    validation pictures."""

    float_accuracy: float
    int8_accuracy: float
    pictures: int  # validation pictures compared
    agreement: float  # share of them given the same label by both
    calibration_pictures: int
    accepted: bool
    reason: str  # one sentence, for people
    # the model's in-domain outlier scores moved as int8 moves them, sorted: the int8 graph's
    # "unknown" threshold is set on them (empty without a detector)
    outlier_calibration: list[float] = field(default_factory=list, repr=False)

    @property
    def loss(self) -> float:
        """Accuracy lost to int8, in points (negative: int8 did better)."""
        return 100 * (self.float_accuracy - self.int8_accuracy)


def quantize(model: str | os.PathLike | Predictor, data: ImageData, *, again: bool = False,
             show_progress: bool = True) -> Int8Check:
    """Make and check the int8 version of a model (see the module's docstring).

    model: a model file, or a Predictor loaded with runtime="torch".
    data: the pictures the model was trained on: its training split calibrates, its
    validation split compares.
    again: check again even if this model was checked on this machine before.

    Example:
        >>> check = imgclf.quantize("models/ants/model.imgclf", data)
        >>> check.accepted, round(check.loss, 2)
        (True, 0.0)
        >>> imgclf.load("models/ants/model.imgclf", int8=True).predict("ant.jpg").label
        'ants'
    """
    require("onnxruntime")
    predictor = model if isinstance(model, Predictor) else Predictor.load(model, runtime="torch")
    if predictor.runtime != "torch":
        raise ImgclfError("int8 is made from a .imgclf model file (or a Predictor loaded "
                          "with runtime='torch'), not from an ONNX file.")
    if list(data.classes) != predictor.classes:
        raise ImgclfError(f"These pictures' classes {list(data.classes)} are not the model's "
                          f"{predictor.classes}: give the data it was trained on.")
    if not data.train or not data.valid:
        raise ImgclfError("int8 needs training pictures to calibrate on and validation "
                          "pictures to compare on; this data lacks one of them.")
    data = data.with_input(predictor.input)
    size = predictor.input.image_size
    float_path = cached_graph(predictor.network, size, show_progress=show_progress)
    key = _check_key(data)
    saved = read_int8_check(float_path)
    if not again and saved is not None and saved.get("key") == key:
        return Int8Check(**{k: saved[k] for k in Int8Check.__dataclass_fields__})
    target = int8_path(float_path)
    calibration = _calibration_pictures(predictor, data)
    _quantize_file(float_path, target, calibration, show_progress)
    check = _compare(predictor, float_path, target, data, len(calibration), show_progress)
    if not check.accepted:
        target.unlink(missing_ok=True)
    # the checked graph's hash: read_int8_check serves no other file under its name
    digest = {"sha256": file_sha256(target)} if check.accepted else {}
    write_json(float_path.with_suffix(".int8.json"), {**asdict(check), "key": key, **digest})
    return check


def _check_key(data: ImageData) -> str:
    """What a kept check depends on besides the model: the pictures, the rule and this code
    (a change to any checks again)."""
    import hashlib

    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(json.dumps([MAX_LOSS, CALIBRATION_PICTURES, data.config.seed,
                              [str(item.path) for item in data.train],
                              [str(item.path) for item in data.valid]]).encode())
    return digest.hexdigest()[:16]


def _calibration_pictures(predictor: Predictor, data: ImageData) -> np.ndarray:
    """A seeded choice of training pictures, prepared as Predictor prepares them."""
    items = list(data.train)
    random.Random(data.config.seed).shuffle(items)
    pictures = []
    for item in items:
        try:
            pictures.append(predictor.transform.read(data.source(item)))
        except ImageError:
            continue
        if len(pictures) == CALIBRATION_PICTURES:
            break
    if not pictures:
        raise ImgclfError("No training picture could be read to calibrate int8 on.")
    return np.stack(pictures).astype(np.float32)


def _quantize_file(source: Path, target: Path, calibration: np.ndarray,
                   show_progress: bool) -> None:
    """onnxruntime's static quantization of the convolutions, written atomically."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.start = 0

        def get_next(self):
            batch = calibration[self.start:self.start + 8]
            self.start += 8
            return {"images": batch} if len(batch) else None

    with tempfile.TemporaryDirectory(prefix="imgclf-int8-") as work, \
            status(f"Calibrating int8 on {len(calibration)} training pictures",
                   enabled=show_progress):
        prepared, written = Path(work) / "prepared.onnx", Path(work) / "int8.onnx"
        quant_pre_process(str(source), str(prepared))
        # QDQ: the QOperator format fails on timm's graphs ("Graph is not a DAG")
        quantize_static(str(prepared), str(written), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                        nodes_to_exclude=_float_nodes(prepared))
        with atomic_path(target, durable=False) as temporary:  # a cache
            shutil.copyfile(written, temporary)


def _float_nodes(path: Path) -> list[str]:
    """The nodes that stay in float: the pooling, the head and the "unknown" detector (named
    by the modules they were traced from). The backbone is quantized whole, activations and
    additions too, so int8 flows from one convolution to the next: quantizing only the
    convolutions leaves a (de)quantization around each and gains 1.1x instead of 2.4x."""
    import onnx

    return [node.name for node in onnx.load(str(path)).graph.node
            if node.name.startswith(("/head", "/detector", "/part/head", "/part/detector"))
            or node.op_type in ("ReduceMean", "GlobalAveragePool", "Gemm", "MatMul",
                                "Softmax")]


def _compare(predictor: Predictor, float_path: Path, int8_file: Path, data: ImageData,
             calibrated: int, show_progress: bool) -> Int8Check:
    """Float and int8 over the validation pictures, through the one forward loop (for a
    multi-label model, accuracy and agreement are exact matches of the label sets at its
    thresholds: over (picture, label) pairs, mostly right absences, a lost label would hide)."""
    paths = [data.source(item) for item in data.valid]
    targets = np.array([data.target(item) for item in data.valid])
    labels, scores, ok = [], [], None
    for name, path in (("float", float_path), ("int8", int8_file)):
        network = OnnxNetwork(path)
        network.multi_label = predictor.multi_label
        outputs = loop.run(network, paths, transform=predictor.transform,
                      num_workers=data.config.num_workers, show_progress=show_progress,
                      description=f"Checking {name} on validation pictures")
        probabilities = np.nan_to_num(outputs.probabilities)
        labels.append(probabilities >= predictor.thresholds if predictor.multi_label
                      else probabilities.argmax(1))
        scores.append(outputs.outlier)
        ok = outputs.ok if ok is None else ok
    calibration = []
    if scores[0] is not None:
        # int8 moves the detector's scores up a little (median 0.41 -> 0.46 on hymenoptera):
        # its calibration is the model's, moved by the median change on these pictures, so
        # the threshold keeps the model's acceptance
        shift = float(np.median(scores[1][ok] - scores[0][ok]))
        calibration = np.sort(outlier_calibration(predictor.network) + shift).tolist()
    float_accuracy, int8_accuracy = (float(_same(found[ok], targets[ok]).mean())
                                     for found in labels)
    loss = float_accuracy - int8_accuracy
    accepted = loss <= MAX_LOSS + 1e-12
    measure = "exact match" if predictor.multi_label else "accuracy"
    reason = (f"int8 {measure} {int8_accuracy:.4f} against float {float_accuracy:.4f} on "
              f"{int(ok.sum())} validation pictures ({100 * loss:+.2f} points lost; at most "
              f"{100 * MAX_LOSS:.1f} allowed).")
    return Int8Check(float_accuracy=float_accuracy, int8_accuracy=int8_accuracy,
                     pictures=int(ok.sum()),
                     agreement=float(_same(labels[0][ok], labels[1][ok]).mean()),
                     calibration_pictures=calibrated, accepted=accepted, reason=reason,
                     outlier_calibration=calibration)


def _same(found: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Per picture: the same class, or (multi-label: 2-D) the same whole set of labels."""
    equal = found == expected
    return equal.all(axis=1) if equal.ndim == 2 else equal
