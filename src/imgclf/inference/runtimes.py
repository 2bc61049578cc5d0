"""onnxruntime behind the interface of the one forward loop (inference/loop.py).

Two uses:
- ``accelerated(network, size)``: the CPU runtime every forward pass outside training uses by
  default (Predictor, evaluate, the probe's and cleaning's embeddings, serve). The network is
  exported once, checked against PyTorch, and kept in the cache keyed by its weights and input
  size, so a model is built once, not per call. Measured by bench/throughput.py (2-core
  AVX2 CPU, efficientnet_lite0, pooled embeddings, batch 32): onnxruntime 75.3 pictures/s at
  224 and 45.8 at 288; OpenVINO 67.7 / 40.7; torch.compile 37.4 at 224; PyTorch eager
  (channels_last) 29.7 / 18.6. PyTorch stays the fallback where onnxruntime is missing.
- ``load_onnx``: an ONNX file written by ``export_onnx`` (the network followed by softmax,
  plus the classes and preprocessing in its metadata); ``export_graph`` writes both that
  file's graph and the cached ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from imgclf._files import atomic_path, file_sha256
from imgclf._progress import console, status
from imgclf.cache import cache_folder
from imgclf.config import RUNTIMES, InferenceConfig, InputConfig, UnknownConfig
from imgclf.errors import ImgclfError, ModelFileError
from imgclf.inference.graphs import (OnnxNetwork, code_digest, digest_path, intact,
                                      require, softmax)
from imgclf.modelfile import ModelInfo, config_from_dict

# Largest difference between PyTorch and onnxruntime (probabilities, embeddings relative to
# their scale, outlier scores) that a cached runtime may show on its check pictures.
RUNTIME_TOLERANCE = 1e-4
# The cached file's format: a change here rebuilds every cached runtime.
_CACHE_VERSION = 1


def accelerated(network: torch.nn.Module, image_size: int, *,
                runtime: str = InferenceConfig.runtime,
                embeddings_only: bool = False, show_progress: bool = True
                ) -> torch.nn.Module | OnnxNetwork:
    """The network as the chosen runtime runs it (see the module's docstring): its cached
    onnxruntime graph (an OnnxNetwork, which the forward loop runs in numpy), or itself.

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
    if runtime == "torch" or infer is None or isinstance(network, OnnxNetwork):
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
    try:
        path = cached_graph(network, image_size, embeddings_only=embeddings_only,
                            show_progress=show_progress)
        try:
            onnx = OnnxNetwork(path)
        except ModelFileError:  # a cached file cut short (a crash, a full disk): build again
            path.unlink(missing_ok=True)
            onnx = OnnxNetwork(cached_graph(network, image_size,
                                            embeddings_only=embeddings_only,
                                            show_progress=show_progress))
    except (ImgclfError, OSError, RuntimeError, ValueError, TypeError) as error:
        # OSError: a cache folder that cannot be written (read-only, no home folder)
        if runtime == "onnx":
            raise ImgclfError(f"onnxruntime could not run this network: {error}") from None
        _note_once(f"PyTorch runs the network: onnxruntime could not ({error}).")
        return network
    return _calibrated(onnx, network)


def cached_graph(network: torch.nn.Module, image_size: int, *, embeddings_only: bool = False,
                 show_progress: bool = True) -> Path:
    """The cached ONNX file of a network at an input size: built, checked against PyTorch
    and kept on the first call; its path on later ones (opening it is the caller's)."""
    graph = (network if isinstance(network, _Front) else _Graph(network, embeddings_only)).eval()
    path = _cache_path(graph, image_size)
    if path.is_file() and not intact(path):
        # not the graph this cache built for these weights (copied over, damaged, or made
        # before graphs carried their hash): never served; built again, with its int8 files
        _note_once(f"The cached graph {path.name} is not the one built for this network; "
                   "building it again.")
        for stale in (path, digest_path(path), int8_path(path), path.with_suffix(".int8.json")):
            stale.unlink(missing_ok=True)
    if not path.is_file():
        _build(graph, image_size, path, show_progress)
    return path


def frozen_front(stages: Sequence[torch.nn.Module], image_size: int, *,
                 show_progress: bool = True) -> OnnxNetwork:
    """The first stages of a network (training/frozen.py: freeze_early's frozen layers) as
    an onnxruntime graph at an input size: pictures (N, 3, size, size) in, what the last of
    the stages makes of them out. Built, checked against PyTorch and cached as the whole
    network's graphs are, keyed by the stages' weights and statistics; an ImgclfError (or
    OSError) when it cannot be."""
    require("onnxruntime")
    path = cached_graph(_Front(stages), image_size, show_progress=show_progress)
    try:
        return OnnxNetwork(path)
    except ModelFileError:  # a cached file cut short: build again
        path.unlink(missing_ok=True)
        return OnnxNetwork(cached_graph(_Front(stages), image_size, show_progress=show_progress))


def int8_module(network: torch.nn.Module, image_size: int) -> OnnxNetwork:
    """The int8 graph of a Classifier that ``imgclf.inference.int8.quantize`` made and approved,
    run by onnxruntime; an ImgclfError saying what to run when there is none, or it was refused."""
    require("onnxruntime")
    path = _cache_path(_Graph(network, False).eval(), image_size)  # its name: none is built
    check = read_int8_check(path)
    if check is None:
        raise ImgclfError(
            "This model has no checked int8 version on this machine yet: int8 is calibrated on "
            "the training pictures and compared with float on the validation pictures first. "
            "Run: imgclf evaluate MODEL DATA --int8 (or imgclf.quantize(model, data)).")
    if not check["accepted"]:
        raise ImgclfError(f"int8 was refused for this model: {check['reason']} Run it without "
                          "--int8.")
    module = _calibrated(OnnxNetwork(int8_path(path)), network)
    if check.get("outlier_calibration"):
        module.calibration = np.array(check["outlier_calibration"], np.float32)
    return module


def int8_path(float_path: Path) -> Path:
    """Where the int8 graph made from a cached float graph lives."""
    return float_path.with_suffix(".int8.onnx")


def read_int8_check(float_path: Path) -> dict | None:
    """What the int8 check of a cached graph found (accuracies, accepted, reason), if it ran
    and its graph is still there."""
    result = float_path.with_suffix(".int8.json")
    try:
        check = json.loads(result.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(check, dict) or not isinstance(check.get("accepted"), bool):
        return None  # not a check imgclf wrote: as if none had run
    if check["accepted"]:
        # an accepted graph is served only if it is, byte for byte, the one that was checked
        graph = int8_path(float_path)
        if not graph.is_file() or check.get("sha256") != file_sha256(graph):
            return None
    return check


def _calibrated(onnx: OnnxNetwork, network: torch.nn.Module) -> OnnxNetwork:
    """The graph, with the calibration scores of the network's detector (none without one)."""
    detector = getattr(network, "detector", None)
    onnx.calibration = (detector.calibration.cpu().numpy() if detector is not None
                        else np.zeros(0, np.float32))
    return onnx


class _Graph(torch.nn.Module):
    """What a cached runtime computes: logits, pooled embeddings and (with a detector) outlier
    scores of a Classifier; or the pooled embeddings of its backbone alone."""

    what = "this network"

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


class _Front(torch.nn.Module):
    """What a frozen front computes: the stages run in turn (frozen_front)."""

    outputs = ["features"]
    what = "the frozen early layers"

    def __init__(self, stages: Sequence[torch.nn.Module]):
        super().__init__()
        self.part = torch.nn.Sequential(*stages)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.part(images)


def _cache_path(graph: _Graph | _Front, image_size: int) -> Path:
    """cache/runtimes/<key>.onnx, the key a hash of the graph's weights, outputs, input size
    and the versions that shape the export."""
    import timm

    runtime = require("onnxruntime")
    detector = getattr(graph.part, "detector", None)
    digest = hashlib.sha256(json.dumps(
        {"version": _CACHE_VERSION, "size": image_size, "outputs": graph.outputs,
         "torch": torch.__version__, "onnxruntime": runtime.__version__,
         "timm": timm.__version__, "code": code_digest(),
         # the detector's settings that are attributes, not tensors
         "detector": [detector.k, detector.softmax_weight, detector.by_class]
         if detector is not None else None,
         }).encode())
    for name, tensor in graph.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
                      .numpy().tobytes())
    return cache_folder("runtimes") / f"{digest.hexdigest()[:24]}.onnx"


def _build(graph: _Graph | _Front, image_size: int, path: Path, show_progress: bool) -> None:
    """Export the graph (dynamic batch axis), check it against PyTorch, then move it into
    place: a half-built or mismatched file is never left in the cache."""
    pictures = torch.randn(3, 3, image_size, image_size,
                           generator=torch.Generator().manual_seed(0))
    with status(f"Preparing onnxruntime for {graph.what} (once; then cached)",
                enabled=show_progress), atomic_path(path, durable=False) as temporary:
        export_graph(graph, pictures[:2], temporary, output_names=graph.outputs, opset=17)
        with torch.inference_mode():
            expected = graph(pictures)
        expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
        actual = OnnxNetwork(temporary).run(pictures.numpy())
        for name, want, got in zip(graph.outputs, expected, actual):
            want = want.float().numpy()
            if name == "logits":  # compared as probabilities, as export_onnx does
                want, got = softmax(want), softmax(got)
            scale = (max(1.0, float(np.abs(want).max())) if name in ("embeddings", "features")
                     else 1.0)
            difference = float(np.abs(want - got).max()) / scale
            if difference > RUNTIME_TOLERANCE:
                raise ImgclfError(f"its {name} differ from PyTorch's by {difference:.1e}")
        # the hash of the graph just checked: a file that differs is never served (_intact)
        with atomic_path(digest_path(path), durable=False) as digest_file:
            digest_file.write_text(file_sha256(temporary), encoding="ascii")


def export_graph(graph: torch.nn.Module, example: torch.Tensor, path: Path, *,
                 output_names: Sequence[str], opset: int) -> None:
    """Write the graph as ONNX for pictures of the example's size, any batch size: its
    "same" convolutions padded by fixed amounts (_fixed_padding), exported by the TorchScript
    exporter, constants folded and zero pads merged into the convolutions (_fold_padding).

    The TorchScript exporter takes 1.5 s for efficientnet_lite0 where the dynamo one takes
    28 s (a 2-core AVX2 CPU), and its graph runs as fast; PyTorch marks it deprecated, so its
    notices are silenced here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_fixed_padding(graph, example.shape[-1]), (example,), str(path),
                          input_names=["images"], output_names=list(output_names),
                          opset_version=opset, dynamo=False,
                          dynamic_axes={"images": {0: "batch"}})
    _fold_padding(path)


def _fixed_padding(graph: torch.nn.Module, image_size: int) -> torch.nn.Module:
    """A copy of the graph whose TensorFlow-style "same" convolutions (timm's Conv2dSame, in
    the tf_ backbones such as the default) pad by fixed amounts worked out for this input size.

    Traced as they are, each works out its padding from the picture's shape at run time: a
    dozen shape operations and a Pad that onnxruntime cannot merge into the convolution. With
    _fold_padding, the graph runs 1.4x faster (efficientnet_lite0, 288 px, batch 32: 76 -> 105
    pictures/s on a 2-core CPU, as fast as the dynamo exporter's graph, in a tenth of its
    build time).
    """
    import copy

    from timm.layers.conv2d_same import Conv2dSame
    from timm.layers.padding import get_same_padding

    if not any(isinstance(module, Conv2dSame) for module in graph.modules()):
        return graph
    graph = copy.deepcopy(graph)
    sizes: dict[str, tuple[int, int]] = {}
    def record(name: str):
        def hook(_module, inputs):
            sizes.setdefault(name, tuple(inputs[0].shape[-2:]))
        return hook

    hooks = [module.register_forward_pre_hook(record(name))
             for name, module in graph.named_modules() if isinstance(module, Conv2dSame)]
    with torch.inference_mode():
        graph(torch.zeros(1, 3, image_size, image_size))
    for hook in hooks:
        hook.remove()
    for name, (height, width) in sizes.items():
        conv = graph.get_submodule(name)
        pad_h = get_same_padding(height, conv.kernel_size[0], conv.stride[0], conv.dilation[0])
        pad_w = get_same_padding(width, conv.kernel_size[1], conv.stride[1], conv.dilation[1])
        parent, _, child = name.rpartition(".")
        setattr(graph.get_submodule(parent), child, _FixedPadConv(
            conv, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)))
    return graph


class _FixedPadConv(torch.nn.Module):
    """A Conv2dSame at one input size: a constant Pad, then the convolution."""

    def __init__(self, conv: torch.nn.Conv2d, padding: tuple[int, int, int, int]):
        super().__init__()
        self.conv, self.padding = conv, padding

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        return torch.nn.functional.conv2d(torch.nn.functional.pad(images, self.padding),
                                          conv.weight, conv.bias, conv.stride, 0, conv.dilation,
                                          conv.groups)


def _fold_padding(path: Path) -> None:
    """Rewrite an ONNX file in place: constants folded (onnxruntime's basic, portable
    optimisations), then each zero Pad that feeds one Conv merged into the Conv's own (possibly
    uneven) pads, which onnxruntime does not do itself."""
    import onnx
    from onnx import helper, numpy_helper

    runtime = require("onnxruntime")
    options = runtime.SessionOptions()
    options.graph_optimization_level = runtime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(path)
    runtime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(path))
    graph = model.graph
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    users: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    merged = []
    for pad in (node for node in graph.node if node.op_type == "Pad"):
        consumers = users.get(pad.output[0], [])
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        pads = constants.get(pad.input[1]) if len(pad.input) > 1 else None
        value = pad.input[2] if len(pad.input) > 2 else ""
        if (len(consumers) != 1 or consumers[0].op_type != "Conv" or mode != b"constant"
                or pads is None or len(pads) != 8 or pads.min() < 0 or pads[[0, 1, 4, 5]].any()
                or (value and (value not in constants or constants[value].any()))):
            continue
        conv = consumers[0]
        before = next((list(a.ints) for a in conv.attribute if a.name == "pads"), [0] * 4)
        kept = [a for a in conv.attribute if a.name != "pads"]
        del conv.attribute[:]
        conv.attribute.extend(kept + [helper.make_attribute("pads", [
            before[0] + int(pads[2]), before[1] + int(pads[3]),
            before[2] + int(pads[6]), before[3] + int(pads[7])])])
        conv.input[0] = pad.input[0]
        merged.append(pad)
    for pad in merged:
        graph.node.remove(pad)
    used = {name for node in graph.node for name in node.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)  # the merged pads, which onnxruntime would warn of
    onnx.save(model, str(path))


_NOTED: set[str] = set()


def _note_once(message: str) -> None:
    if message not in _NOTED:
        _NOTED.add(message)
        console().print(message, style="yellow", markup=False, highlight=False,
                        soft_wrap=True)


def load_onnx(path: str | os.PathLike) -> tuple[OnnxNetwork, ModelInfo]:
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
                                                  unknown["config"] if unknown else None),
                         multi_label=network.multi_label,
                         thresholds=tuple(json.loads(meta.get("imgclf_thresholds", "[]"))))
        network.calibration = np.array(unknown["calibration"] if unknown else [], np.float32)
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"{path} is an ONNX file but not one written by imgclf export "
                             f"(no imgclf metadata: {error})") from None
    return network, info
