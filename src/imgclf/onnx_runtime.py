"""onnxruntime behind the interface of the one forward loop (inference.py).

Two uses:
- ``accelerated(network, size)``: the CPU runtime every forward pass outside training uses by
  default (Predictor, evaluate, the probe's and cleaning's embeddings, serve). The network is
  exported once, checked against PyTorch, and kept in the cache keyed by its weights and input
  size, so a model is built once, not per call. Measured by bench/throughput.py (2-core
  AVX2 CPU, efficientnet_lite0, pooled embeddings, batch 32): onnxruntime 75.3 pictures/s at
  224 and 45.8 at 288; OpenVINO 67.7 / 40.7; torch.compile 37.4 at 224; PyTorch eager
  (channels_last) 29.7 / 18.6. PyTorch stays the fallback where onnxruntime is missing.
- ``load_onnx``: an ONNX file written by ``export_onnx`` (the network followed by softmax,
  plus the classes and preprocessing in its metadata); nothing here writes such a file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from imgclf.config import RUNTIMES, InputConfig
from imgclf.errors import ImgclfError, ModelFileError
from imgclf.modelfile import ModelInfo, config_from_dict
from imgclf.unknown import UnknownConfig

ONNX_HINT = "ONNX needs the onnx extra: pip install 'imgclf[onnx]'"
# Largest difference between PyTorch and onnxruntime (probabilities, embeddings relative to
# their scale, outlier scores) that a cached runtime may show on its check pictures.
RUNTIME_TOLERANCE = 1e-4
# The cached file's format: a change here rebuilds every cached runtime.
_CACHE_VERSION = 1


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

    Its graph's outputs are found by name: "logits" (a runtime built by ``accelerated``) or
    "probabilities" (an exported file; their logarithm makes the loop's softmax give them back
    unchanged), "embeddings" and "outlier" when present.
    """

    # the loop hands pictures over as they are: a channels_last copy would only be undone
    channels_last = False

    def __init__(self, network: OnnxNetwork):
        super().__init__()
        self.onnx = network
        self.register_buffer("anchor", torch.zeros(1))  # gives the loop a device to use

    def parameters(self, recurse: bool = True):
        yield self.anchor

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.infer(images)[0]

    def infer(self, images: torch.Tensor, *, embeddings: bool = False):
        """(class scores or None, embeddings or None, outlier scores or None): the
        Classifier's interface."""
        array = np.ascontiguousarray(images.detach().cpu().numpy())
        results = {name: torch.from_numpy(output)
                   for name, output in zip(self.onnx.outputs, self.onnx.run(array))}
        scores = results.get("logits")
        if scores is None and "probabilities" in results:
            scores = results["probabilities"].clamp_min(1e-30).log()
        return (scores, results.get("embeddings") if embeddings else None,
                results.get("outlier"))


def accelerated(network: torch.nn.Module, image_size: int, *, runtime: str = "auto",
                embeddings_only: bool = False, show_progress: bool = True) -> torch.nn.Module:
    """The network as the chosen runtime runs it (see the module's docstring).

    runtime: "auto" (onnxruntime when installed and the network is on the CPU), "onnx"
    (onnxruntime, or an ImgclfError saying how to install it) or "torch" (the network itself).
    embeddings_only: a graph of the backbone's pooled features alone (the probe's and
    cleaning's embeddings), keyed by the backbone's weights, so a new head does not rebuild it.

    The first call for some weights and size exports the network (a few seconds), checks it
    against PyTorch on generated pictures and keeps it in the cache; later calls, in any
    process, load it in well under a second. A network that cannot be exported, or whose
    export does not match, is run by PyTorch, with a note.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, not {runtime!r}")
    infer = getattr(network, "infer", None)
    device = next(network.parameters()).device
    if runtime == "torch" or infer is None or isinstance(network, OnnxModule):
        return network
    if device.type != "cpu":
        if runtime == "onnx":
            raise ImgclfError("runtime='onnx' runs on the CPU: move the network there, or use "
                              "runtime='torch' for the GPU.")
        return network
    try:
        require("onnxruntime")
    except ImgclfError:
        if runtime == "onnx":
            raise
        _note_once("PyTorch runs the network: pip install 'imgclf[onnx]' (onnxruntime) "
                   "for forward passes about 2.5x faster on the CPU.")
        return network
    graph = _Graph(network, embeddings_only).eval()
    path = _cache_path(graph, image_size)
    try:
        try:
            onnx = OnnxNetwork(path) if path.is_file() else None
        except ModelFileError:  # a cached file cut short (a crash, a full disk): build again
            path.unlink(missing_ok=True)
            onnx = None
        if onnx is None:
            _build(graph, image_size, path, show_progress)
            onnx = OnnxNetwork(path)
    except (ImgclfError, OSError, RuntimeError, ValueError, TypeError) as error:
        # OSError: a cache folder that cannot be written (read-only, no home folder)
        if runtime == "onnx":
            raise ImgclfError(f"onnxruntime could not run this network: {error}") from None
        _note_once(f"PyTorch runs the network: onnxruntime could not ({error}).")
        return network
    module = OnnxModule(onnx)
    detector = getattr(network, "detector", None)
    module.onnx.calibration = (detector.calibration.cpu().numpy() if detector is not None
                               else np.zeros(0, np.float32))
    return module


class _Graph(torch.nn.Module):
    """What a cached runtime computes: logits, pooled embeddings and (with a detector) outlier
    scores of a Classifier; or the pooled embeddings of its backbone alone."""

    def __init__(self, network: torch.nn.Module, embeddings_only: bool):
        super().__init__()
        self.embeddings_only = embeddings_only
        # only what the graph uses is a submodule: its weights are the cache key
        self.part = network.backbone if embeddings_only else network

    @property
    def outputs(self) -> list[str]:
        if self.embeddings_only:
            return ["embeddings"]
        detector = getattr(self.part, "detector", None)
        return ["logits", "embeddings"] + (["outlier"] if detector is not None else [])

    def forward(self, images: torch.Tensor):
        if self.embeddings_only:
            return self.part.forward_features(images).mean(dim=(2, 3))
        logits, pooled, outlier = self.part.infer(images, embeddings=True)
        return (logits, pooled) if outlier is None else (logits, pooled, outlier)


def _cache_path(graph: _Graph, image_size: int) -> Path:
    """cache/runtimes/<key>.onnx, the key a hash of the graph's weights, outputs, input size
    and the versions that shape the export."""
    from imgclf.verify import cache_root

    import timm

    runtime = require("onnxruntime")
    detector = getattr(graph.part, "detector", None)
    digest = hashlib.sha256(json.dumps(
        {"version": _CACHE_VERSION, "size": image_size, "outputs": graph.outputs,
         "torch": torch.__version__, "onnxruntime": runtime.__version__,
         "timm": timm.__version__, "code": _code_digest(),
         # the detector's settings that are attributes, not tensors
         "detector": [detector.k, detector.softmax_weight] if detector is not None else None,
         }).encode())
    for name, tensor in graph.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
                      .numpy().tobytes())
    return cache_root() / "runtimes" / f"{digest.hexdigest()[:24]}.onnx"


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    """A hash of the code the graph is traced from (the network, its head and detector, this
    file), so a change to it builds new graphs rather than serving stale ones."""
    from imgclf import model, unknown

    digest = hashlib.sha256()
    for source in (model.__file__, unknown.__file__, __file__):
        digest.update(Path(source).read_bytes())
    return digest.hexdigest()[:16]


def _build(graph: _Graph, image_size: int, path: Path, show_progress: bool) -> None:
    """Export the graph (dynamic batch axis), check it against PyTorch, then move it into
    place: a half-built or mismatched file is never left in the cache."""
    from imgclf._files import atomic_path
    from imgclf._progress import status

    pictures = torch.randn(3, 3, image_size, image_size,
                           generator=torch.Generator().manual_seed(0))
    with status("Preparing onnxruntime for this network (once; then cached)",
                enabled=show_progress), atomic_path(path, durable=False) as temporary:
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation notices
            warnings.simplefilter("ignore")
            # the TorchScript exporter: 1.2 s for efficientnet_lite0, against 10-12 s for
            # the dynamo one (which export_onnx keeps, for files people ship)
            torch.onnx.export(graph, (pictures[:2],), str(temporary), input_names=["images"],
                              output_names=graph.outputs, opset_version=17, dynamo=False,
                              dynamic_axes={"images": {0: "batch"}})
        with torch.inference_mode():
            expected = graph(pictures)
        expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
        actual = OnnxNetwork(temporary).run(pictures.numpy())
        for name, want, got in zip(graph.outputs, expected, actual):
            want = want.float().numpy()
            if name == "logits":  # compared as probabilities, as export_onnx does
                want, got = _softmax(want), _softmax(got)
            scale = max(1.0, float(np.abs(want).max())) if name == "embeddings" else 1.0
            difference = float(np.abs(want - got).max()) / scale
            if difference > RUNTIME_TOLERANCE:
                raise ImgclfError(f"its {name} differ from PyTorch's by {difference:.1e}")


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


_NOTED: set[str] = set()


def _note_once(message: str) -> None:
    if message not in _NOTED:
        _NOTED.add(message)
        from imgclf._progress import console

        console().print(message, style="yellow", markup=False, highlight=False,
                        soft_wrap=True)


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
