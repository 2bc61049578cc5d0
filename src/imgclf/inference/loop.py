"""The one forward loop: pictures in, class probabilities and pooled embeddings out.

Everything that runs a trained network over pictures goes through ``batches`` (or ``run``,
which collects its batches): ``Predictor.predict`` (one picture is a batch of one),
``Predictor.predict_batch``, ``evaluate``, ``Learner.validate`` and the embeddings cache of
probe mode. So the accuracy printed while training, the one saved in the model file, the one
``evaluate`` reports and the answers of the web app cannot disagree.

The loop takes a Classifier, whose ``infer(images, embeddings=...)`` gives class scores,
pooled embeddings and outlier scores (the "unknown" detector) in one pass, or any module whose
``network(images)`` gives class scores (timm's ImageNet networks, say), or an onnxruntime
graph (``graphs.OnnxNetwork``), which it runs in numpy without importing torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from imgclf._progress import progress
from imgclf.config import InferenceConfig
from imgclf.data.datasets import ImageFiles, collate, inference_workers
from imgclf.errors import ImageError
from imgclf.inference.graphs import OnnxNetwork
from imgclf.inference.graphs import probabilities as probabilities_of

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class Batch:
    """One batch's results; rows follow ``indices`` (positions in the dataset)."""

    indices: list[int]
    probabilities: np.ndarray | None  # (rows, classes), when asked for
    embeddings: np.ndarray | None  # (rows, num_features), when asked for
    outlier: np.ndarray | None  # (rows,) higher = stranger, when the network has a detector
    errors: list[ImageError]  # pictures of this batch that could not be read


@dataclass(frozen=True)
class Outputs:
    """Results for every picture, in the order given; unreadable pictures have NaN rows."""

    probabilities: np.ndarray | None  # (pictures, classes)
    embeddings: np.ndarray | None  # (pictures, num_features)
    outlier: np.ndarray | None  # (pictures,) outlier scores, when the network has a detector
    errors: list[ImageError]
    ok: np.ndarray  # (pictures,) True for each picture that was read and went through


def batches(network: nn.Module, dataset: Any, *, batch_size: int = InferenceConfig.batch_size,
            num_workers: int | None = InferenceConfig.num_workers, probabilities: bool = True,
            embeddings: bool = False, tta: bool = False, show_progress: bool = False,
            description: str = "Predicting", transient: bool = False,
            total: int | None = None, first_batch: int | None = None) -> Iterator[Batch]:
    """Run a network over a dataset of (tensor, target, index) items or ImageErrors (or over a
    DataLoader of such a dataset that collates with ``collate``, kept by its owner to reuse
    its worker processes).

    Args:
        probabilities: softmax of the class scores (float32); for a multi-label network
            (its ``multi_label``), each label's sigmoid.
        embeddings: the average-pooled backbone features, as the probe's head sees them.
        tta: test-time augmentation: probabilities averaged with the mirror image's.
        num_workers: DataLoader processes; default: data.datasets.inference_workers (none on 2
            cores), none for a single picture (a process costs more than decoding one photo);
            for an onnxruntime network, that many threads in this process instead (no torch).
        total: rows the progress bar counts, when an item holds several (default: one each).
        first_batch: pictures in the first batch, when fewer than batch_size, so the first
            answers come sooner (read in this process only; a DataLoader's batches are even).
    """
    in_numpy = isinstance(network, OnnxNetwork)  # onnxruntime's: the loop needs no torch
    threads = 0
    if num_workers is None:
        num_workers = inference_workers() if len(dataset) > 1 else 0
        if in_numpy:  # threads, not processes: no torch to import (Pillow releases the lock)
            num_workers, threads = 0, num_workers
    if _is_loader(dataset):
        loader, dataset = dataset, dataset.dataset
        num_workers = loader.num_workers
    elif num_workers:
        import torch

        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                             num_workers=num_workers, collate_fn=collate)
    else:  # in this process: a DataLoader's set-up costs more than a served picture's decode
        loader = _read_here(dataset, _spans(len(dataset), batch_size, first_batch),
                            tensors=not in_numpy, threads=threads)
    if not num_workers and isinstance(dataset, ImageFiles) and len(dataset) > batch_size:
        loader = read_ahead(loader)  # files decoded while the network runs
    rows = progress(loader, total=total or len(dataset), description=description,
                    enabled=show_progress,
                    weight=lambda batch: (0 if batch[0] is None else len(batch[0])) + len(batch[3]),
                    transient=transient)
    if in_numpy:
        yield from _session_batches(network, rows, probabilities=probabilities,
                                    embeddings=embeddings, tta=tta)
        return
    import torch

    if network.training:  # eval() walks every module: 1.7 ms, a served picture's 3%
        network.eval()
    multi_label = getattr(network, "multi_label", False)

    def chances(scores: torch.Tensor) -> torch.Tensor:
        return scores.float().sigmoid() if multi_label else scores.float().softmax(dim=1)

    device = next(network.parameters()).device
    layout = (torch.channels_last if getattr(network, "channels_last", True)
              else torch.contiguous_format)
    with torch.inference_mode():
        for images, _targets, indices, errors in rows:
            if images is None:
                yield Batch([], None, None, None, errors)
                continue
            # channels_last: 1.6x faster at batch 32 on a 2-core CPU (bench/backbone_speed.py)
            images = torch.as_tensor(images).to(device, memory_format=layout)
            scores, pooled, outlier = _forward(network, images, embeddings)
            probability = None
            if probabilities:
                probability = chances(scores)
                if tta:
                    mirrored = _forward(network, images.flip(dims=[3]), False)[0]
                    probability = (probability + chances(mirrored)) / 2
                probability = probability.cpu().numpy()
            yield Batch(indices.tolist(), probability, _numpy(pooled), _numpy(outlier), errors)


def _session_batches(session: OnnxNetwork, rows: Iterable[Any], *, probabilities: bool,
                     embeddings: bool, tta: bool) -> Iterator[Batch]:
    """The loop's body for an onnxruntime session: numpy in and out, no torch (pictures
    collated as tensors by a DataLoader's workers are taken as they are)."""
    for images, _targets, indices, errors in rows:
        if images is None:
            yield Batch([], None, None, None, errors)
            continue
        images = np.asarray(images, dtype=np.float32)
        scores, pooled, outlier = session.infer(images, embeddings=embeddings)
        probability = None
        if probabilities:
            probability = probabilities_of(scores, session.multi_label)
            if tta:
                mirrored = session.infer(np.ascontiguousarray(images[..., ::-1]))[0]
                probability = (probability + probabilities_of(mirrored, session.multi_label)) / 2
        yield Batch(np.asarray(indices).tolist(), probability, pooled, outlier, errors)


def _read_here(dataset: Any, spans: Iterable[tuple[int, int]], *, tensors: bool,
               threads: int) -> Iterator[Any]:
    """Batches read in this process; with threads > 1 the pictures of each batch are read by
    that many threads at once (decoding and resizing release Python's lock), which is how
    an onnxruntime network gets its pictures on more than 2 cores without torch's workers."""
    if threads <= 1:
        for start, stop in spans:
            yield collate([dataset[i] for i in range(start, stop)], tensors=tensors)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads, thread_name_prefix="imgclf-read") as pool:
        for start, stop in spans:
            yield collate(list(pool.map(dataset.__getitem__, range(start, stop))),
                          tensors=tensors)


def _spans(count: int, batch_size: int, first: int | None) -> Iterator[tuple[int, int]]:
    """(start, stop) of each batch: the first of `first` pictures, the others of batch_size."""
    start, size = 0, min(first or batch_size, batch_size)
    while start < count:
        yield start, min(start + size, count)
        start, size = start + size, batch_size


def _is_loader(dataset: Any) -> bool:
    """Whether this is a torch DataLoader (it cannot be one while torch is not imported)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(dataset, torch.utils.data.DataLoader)


def read_ahead(batches: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """The same batches in the same order, each read by one background thread while the
    caller works on the one before (up to `depth` ahead).

    Decoding and resizing a picture (Pillow) and the network (PyTorch, ONNX Runtime) release
    Python's lock, so reading overlaps the network on any number of cores without the
    processes a DataLoader worker costs. An error while reading is raised here, at its batch;
    a caller that stops early (Ctrl-C, an error) stops the thread at its next batch.
    """
    import queue
    import threading

    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def offer(item) -> bool:  # False once the caller has stopped
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not offer((batch, None)):
                    return
            offer((done, None))
        except BaseException as error:  # raised in the caller's thread, at its batch
            offer((done, error))

    thread = threading.Thread(target=produce, name="imgclf-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            batch, error = ready.get()
            if error is not None:
                raise error
            if batch is done:
                return
            yield batch
    finally:
        stop.set()


def _forward(network: nn.Module, images: torch.Tensor, embeddings: bool):
    infer = getattr(network, "infer", None)
    if infer is None:
        return network(images), None, None
    return infer(images, embeddings=embeddings)


def _numpy(values: torch.Tensor | None) -> np.ndarray | None:
    return values.float().cpu().numpy() if values is not None else None


def run(network: nn.Module, pictures: Sequence[Any] | Any, *, transform: Callable | None = None,
        **options) -> Outputs:
    """Run a network over pictures and collect every batch: ``batches`` for a whole list.

    pictures: paths, encoded bytes or PIL images (read with ``load_image``, then transform),
    or a dataset of (tensor, target, index) items such as ``ImageData.dataset``.
    Options are those of ``batches``.
    """
    dataset = pictures if transform is None else ImageFiles(pictures, transform)
    count = len(dataset.dataset if _is_loader(dataset) else dataset)
    tables: dict[str, np.ndarray | None] = dict.fromkeys(("probabilities", "embeddings",
                                                          "outlier"))
    errors: list[ImageError] = []
    ok = np.zeros(count, dtype=bool)
    for batch in batches(network, dataset, **options):
        errors.extend(batch.errors)
        ok[batch.indices] = True
        for name in tables:
            rows = getattr(batch, name)
            if rows is not None:
                tables[name] = _place(tables[name], count, batch.indices, rows)
    if options.get("probabilities", True) and tables["probabilities"] is None:
        tables["probabilities"] = np.full((count, 0), np.nan, dtype=np.float32)
    if options.get("embeddings", False) and tables["embeddings"] is None:
        tables["embeddings"] = np.full((count, 0), np.nan, dtype=np.float32)
    return Outputs(errors=errors, ok=ok, **tables)


def _place(table: np.ndarray | None, count: int, indices: list[int], rows: np.ndarray
           ) -> np.ndarray:
    if table is None:
        table = np.full((count, *rows.shape[1:]), np.nan, dtype=np.float32)
    table[indices] = rows
    return table


def losses(probabilities: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Cross-entropy of each picture: -log(probability given to its true class). Multi-label
    targets (pictures, labels) of 0/1: the binary cross-entropy, averaged over the labels."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(targets)
    if targets.ndim == 2:
        clipped = np.clip(probabilities, 1e-12, 1 - 1e-12)
        return -(targets * np.log(clipped) + (1 - targets) * np.log(1 - clipped)).mean(axis=1)
    true = probabilities[np.arange(len(targets)), targets]
    return -np.log(np.clip(true, 1e-12, 1.0))


def scores(probabilities: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """valid_loss, accuracy and error_rate: what training prints, saves and ``evaluate`` gives.

    Multi-label targets (pictures, labels): accuracy is the share of (picture, label) pairs
    right at a probability of 0.5, fastai's ``accuracy_multi``."""
    targets = np.asarray(targets)
    if not len(targets):
        return {"valid_loss": float("nan"), "accuracy": float("nan"), "error_rate": float("nan")}
    if targets.ndim == 2 and targets.shape[1]:
        accuracy = float(((np.asarray(probabilities) >= 0.5) == (targets > 0.5)).mean())
    else:
        targets = targets.astype(np.int64)
        accuracy = float((np.asarray(probabilities).argmax(axis=1) == targets).mean())
    return {"valid_loss": float(losses(probabilities, targets).mean()), "accuracy": accuracy,
            "error_rate": 1.0 - accuracy}
