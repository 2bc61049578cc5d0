"""onnxruntime behind the interface of the one forward loop (inference.py).

An ONNX file written by ``export_onnx`` holds the network followed by softmax, plus the
classes and preprocessing in its metadata. ``load_onnx`` reads both; nothing here exports.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from imgclf.config import InputConfig
from imgclf.errors import ImgclfError, ModelFileError
from imgclf.modelfile import ModelInfo, config_from_dict
from imgclf.unknown import UnknownConfig

ONNX_HINT = "ONNX needs the onnx extra: pip install 'imgclf[onnx]'"


def require(module: str, hint: str = ONNX_HINT):
    """Import an optional dependency, or fail with the pip command that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImgclfError(hint) from None


class OnnxNetwork:
    """An onnxruntime session: normalised pictures -> probabilities (and outlier scores, for a
    model with an "unknown" detector)."""

    def __init__(self, path: str | os.PathLike):
        runtime = require("onnxruntime")
        options = runtime.SessionOptions()
        try:
            self.session = runtime.InferenceSession(str(path), options,
                                                    providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types
            raise ModelFileError(f"{path} is not a readable ONNX file ({error})") from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.outputs = [output.name for output in self.session.get_outputs()]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.run(images)[0]

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        """[probabilities] or [probabilities, outlier scores]."""
        return self.session.run(self.outputs, {"images": images.astype(np.float32)})


class OnnxModule(torch.nn.Module):
    """An OnnxNetwork as a torch module, so the forward loop runs it like any network.

    The graph outputs probabilities; returning their logarithm makes the loop's softmax give
    them back unchanged.
    """

    def __init__(self, network: OnnxNetwork):
        super().__init__()
        self.onnx = network
        self.register_buffer("anchor", torch.zeros(1))  # gives the loop a device to use

    def parameters(self, recurse: bool = True):
        yield self.anchor

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.infer(images)[0]

    def infer(self, images: torch.Tensor, *, embeddings: bool = False):
        """(log-probabilities, None, outlier scores or None): the Classifier's interface; an
        ONNX graph gives no embeddings."""
        array = np.ascontiguousarray(images.detach().cpu().numpy())
        outputs = [torch.from_numpy(output) for output in self.onnx.run(array)]
        outlier = outputs[1] if len(outputs) > 1 else None
        return outputs[0].clamp_min(1e-30).log(), None, outlier


def load_onnx(path: str | os.PathLike) -> tuple[OnnxModule, ModelInfo]:
    """An ONNX file written by ``export_onnx``: the network and what its metadata says."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"ONNX file not found: {path}")
    network = OnnxNetwork(path)
    meta = network.metadata
    try:
        values = json.loads(meta["imgclf_input"])
        # ONNX files from imgclf 0.1 kept resize beside the input config
        values.setdefault("resize", meta.get("imgclf_resize", "crop"))
        unknown = json.loads(meta["imgclf_unknown"]) if "imgclf_unknown" in meta else None
        info = ModelInfo(backbone=meta.get("imgclf_backbone") or "unknown",
                         classes=tuple(json.loads(meta["imgclf_classes"])),
                         input=InputConfig.from_dict(values),
                         unknown=config_from_dict(UnknownConfig,
                                                  unknown["config"] if unknown else None))
        network.calibration = np.array(unknown["calibration"] if unknown else [], np.float32)
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"{path} is an ONNX file but not one written by imgclf export "
                             f"(no imgclf metadata: {error})") from None
    return OnnxModule(network), info
