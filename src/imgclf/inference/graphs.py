"""onnxruntime without torch: what predicting needs once a network's graph exists.

- ``OnnxNetwork``: an ONNX graph (a runtime cached by ``runtimes.accelerated``, or a file
  written by ``export_onnx``), numpy pictures in, numpy scores out. The forward loop runs it
  without torch (inference/loop.py).
- The graph index: a model file whose graph was built and checked against PyTorch is
  remembered by the hash of its bytes, so loading the same file again (``imgclf predict``, a
  server, a Ray actor) opens its graph directly, without importing torch or building the
  network: about 0.3 s from a process's start to a loaded model, against 5-6 s.

torch, torchvision and timm are never imported here.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from imgclf._files import known_sha256, write_json
from imgclf.cache import cache_folder
from imgclf.errors import ImgclfError, ModelFileError

ONNX_HINT = "ONNX needs the onnx extra: pip install 'imgclf[onnx]'"
# The index entries' format: a change here forgets every entry (graphs are found again the
# slow way, once, and remembered anew).
_INDEX_VERSION = 1


def require(module: str, hint: str = ONNX_HINT):
    """Import an optional dependency, or fail with the pip command that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImgclfError(hint) from None


class OnnxNetwork:
    """An onnxruntime session: normalised pictures -> class scores, pooled embeddings and
    outlier scores (those its graph gives), as numpy arrays."""

    def __init__(self, path: str | os.PathLike):
        runtime = require("onnxruntime")
        options = runtime.SessionOptions()
        # idle threads sleep instead of spinning: a spinning pool takes the cores from the
        # decoding and resizing around each call (one picture through Predictor at 224 px:
        # p50 15.9 -> 13.4 ms, p99 54 -> 17 ms), for about 2% of batch-32 throughput
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = runtime.InferenceSession(str(path), options,
                                                    providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types
            raise ModelFileError(f"{path} is not a readable ONNX file ({error})") from None
        self.path = Path(path)
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        # a graph quantized by imgclf.quantize (a cached one, or an exported file)
        self.int8 = (self.path.name.endswith(".int8.onnx")
                     or self.metadata.get("imgclf_int8") == "true")
        self.outputs = [output.name for output in self.session.get_outputs()]
        # a multi-label model's: each class score is its own label's (sigmoid); set by whoever
        # loads the graph for a model, read from an exported file's metadata
        self.multi_label = (self.metadata.get("imgclf_multi_label") == "true"
                            or "label_probabilities" in self.outputs)
        # the in-domain outlier scores the detector was calibrated on (set by whoever loads
        # the graph for a model: they are the model's, not the graph's)
        self.calibration = np.zeros(0, np.float32)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.run(images)[0]

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        """Every output of the graph, in the order of ``outputs``."""
        return self.session.run(self.outputs, {"images": np.ascontiguousarray(
            images, dtype=np.float32)})

    def infer(self, images: np.ndarray, *, embeddings: bool = False):
        """(class scores, embeddings or None, outlier scores or None): a Classifier's
        ``infer``, in numpy. The scores are logits (a cached runtime) or the logarithm of
        the probabilities (an exported file), so a softmax gives the probabilities either way
        (multi-label: the log-odds, so a sigmoid does).
        """
        results = dict(zip(self.outputs, self.run(images)))
        scores = results.get("logits")
        if scores is None and "label_probabilities" in results:  # multi-label: log-odds
            given = np.clip(results["label_probabilities"], np.float32(1e-30),
                            np.float32(1 - 1e-7))
            scores = np.log(given) - np.log1p(-given)
        elif scores is None and "probabilities" in results:
            scores = np.log(np.maximum(results["probabilities"], np.float32(1e-30)))
        return (scores, results.get("embeddings") if embeddings else None,
                results.get("outlier"))


def softmax(scores: np.ndarray) -> np.ndarray:
    """Class probabilities from class scores, row by row (float32)."""
    scores = np.asarray(scores, dtype=np.float32)
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def sigmoid(scores: np.ndarray) -> np.ndarray:
    """Each label's probability from its score, on its own (multi-label; float32)."""
    scores = np.asarray(scores, dtype=np.float32)
    small = np.exp(-np.abs(scores))  # never overflows; keeps tiny probabilities as torch does
    return np.where(scores >= 0, 1 / (1 + small), small / (1 + small)).astype(np.float32)


def probabilities(scores: np.ndarray, multi_label: bool = False) -> np.ndarray:
    """What a network's class scores mean: softmax, or a sigmoid per label (multi-label)."""
    return sigmoid(scores) if multi_label else softmax(scores)


# --- the graph index: model file -> its checked graph ---


def remember_graph(model: str | os.PathLike, graph: str | os.PathLike) -> None:
    """Note that `graph` (a checked graph in the runtimes cache) runs the model file `model`
    as it is now, byte for byte. A cache: a folder that cannot be written costs the next load
    the slow way, nothing else."""
    try:
        write_json(_entry_path(known_sha256(model)),
                   {"version": _INDEX_VERSION, "graph": Path(graph).name,
                    "environment": environment()})
    except (OSError, ImgclfError):  # ImgclfError: the cache folder became unwritable
        pass


def remembered_graph(model: str | os.PathLike) -> Path | None:
    """The checked graph remembered for this exact model file, when there is one and it is
    still the graph that was checked (its hash), built by this imgclf with these versions."""
    try:
        entry = json.loads(_entry_path(known_sha256(model)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (not isinstance(entry, dict) or entry.get("version") != _INDEX_VERSION
            or entry.get("environment") != environment()):
        return None
    graph = cache_folder("runtimes") / str(entry.get("graph", ""))
    return graph if graph.suffix == ".onnx" and intact(graph) else None


def _entry_path(digest: str) -> Path:
    return cache_folder("runtimes") / "models" / f"{digest[:32]}.json"


def digest_path(graph: Path) -> Path:
    """Where a cached graph's hash is kept, written when the graph was built and checked."""
    return graph.with_suffix(".sha256")


def intact(graph: Path) -> bool:
    """Whether a cached graph is, byte for byte, the one built and checked for its key."""
    try:
        return digest_path(graph).read_text(encoding="ascii").strip() == known_sha256(graph)
    except (OSError, UnicodeDecodeError):
        return False


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, str | None]:
    """What a graph depends on besides the weights: the versions that shape an export and a
    hash of imgclf's code it is traced from (read from the installed metadata and files, so
    nothing is imported)."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for package in ("torch", "timm", "onnxruntime"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {**versions, "code": code_digest()}


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """A hash of the code a graph is traced from (the network, its head and detector, the
    export), so a change to it builds new graphs rather than serving stale ones."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for source in ("model.py", "unknown.py", "inference/runtimes.py"):
        digest.update((package / source).read_bytes())
    return digest.hexdigest()[:16]
