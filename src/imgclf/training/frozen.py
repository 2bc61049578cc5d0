"""What the frozen early layers compute, computed once.

With ``freeze_early`` (auto mode on a CPU) the backbone's first stages keep their pretrained
weights for the whole run, and their batch norms their ImageNet statistics: what they make of
a picture never changes. They are also where the network spends most of a forward pass
(efficientnet_lite0 at 288 px on 2 cores: 82%), because their feature maps are the largest.

``ValidationStart`` keeps the validation pictures as the frozen stages leave them (the first
pass computes and stores them), so each later validation pass runs only the rest of the
network: the same figures, several times faster. It re-reads the pictures whenever the frozen
stages change (another ``frozen_start``, weights loaded or trained) and stays out of the way
where the stored features would take more than ``MAX_BYTES``.

``FrozenFront`` runs the frozen stages with onnxruntime instead of PyTorch on a CPU
(TrainConfig.frozen_runtime, by default where onnxruntime is installed): they only ever
compute forward, for every
training batch of every epoch, and onnxruntime runs them 4.6x as fast there
(efficientnet_lite0's first 10 of 20 stages, batch 16 at 224 px, 2-core EPYC: 57 against 262
ms), so a training step takes 0.34 s instead of 0.56. The trained stages start from its
output.

``TrainingViews`` does the same for training (TrainConfig.reuse_views): half the epochs of a
whole-network schedule (``plan.reuses``) train again on an earlier epoch's augmented pictures as
the frozen stages left them, reshuffled, which skips reading, augmenting and the frozen
stages; the schedule's last epoch always reads new ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from imgclf._progress import console, progress
from imgclf.config import InferenceConfig
from imgclf.errors import ImgclfError
from imgclf.inference import loop
from imgclf.inference.graphs import OnnxNetwork
from imgclf.inference.loop import read_ahead
from imgclf.inference.runtimes import frozen_front
from imgclf.model import Classifier

__all__ = ["MAX_BYTES", "FrozenFront", "TrainingViews", "ValidationStart", "run_frozen"]

# The most memory stored features may take (float32): efficientnet_lite0 at 288 px leaves
# 104 KB a picture after its frozen stages, so 1 GiB holds about 10,000 validation pictures.
MAX_BYTES = 1 << 30


def frozen_key(network: Classifier, start: int) -> tuple:
    """Identifies the weights of the first `start` stages: every parameter's identity and
    version (PyTorch counts each in-place change: an optimizer step, load_state_dict). Their
    batch norms' statistics are not counted: they stay as they are in a Classifier's training
    mode, and change only with the parameters (load_state_dict) or to the same values
    (DistributedDataParallel's broadcast from the first process)."""
    tensors = [t for stage in network.stages()[:start] for t in stage.parameters()]
    return (start, next(network.parameters()).device,
            tuple((id(t), t._version) for t in tensors))


class FrozenFront:
    """The frozen stages of a network, run by onnxruntime (see the module's docstring).

    One graph per input size (training crops, validation pictures), built the first time a
    size comes, checked against PyTorch and cached on disk by the stages' weights, so later
    runs of the same backbone only open it. When the frozen stages change (another
    frozen_start, weights loaded), their graphs are made anew. Where a graph cannot be built,
    PyTorch runs the stages, with a note.
    """

    def __init__(self, network: Classifier, *, show_progress: bool = True):
        self.network, self.show_progress = network, show_progress
        self.key: tuple | None = None
        self.graphs: dict[tuple[int, int], OnnxNetwork | None] = {}

    def __call__(self, images: torch.Tensor, start: int) -> torch.Tensor:
        """What the first `start` stages make of images (on the CPU): PyTorch's
        network.features(images, stop=start), without gradients, in channels_last."""
        key = frozen_key(self.network, start)
        if key != self.key:
            self.key, self.graphs = key, {}
        size = tuple(images.shape[-2:])
        if size not in self.graphs:
            self.graphs[size] = self._build(start, size) if size[0] == size[1] else None
        graph = self.graphs[size]
        if graph is None:
            with torch.no_grad():
                return self.network.features(images, stop=start)
        features = graph(images.detach().contiguous().numpy())
        return torch.from_numpy(features).contiguous(memory_format=torch.channels_last)

    def prepare(self, start: int, sizes) -> None:
        """Build (or open) the graphs of the first `start` stages at these square sizes now,
        before a phase's steps are timed, rather than at their first batch."""
        key = frozen_key(self.network, start)
        if key != self.key:
            self.key, self.graphs = key, {}
        for size in sizes:
            if (size, size) not in self.graphs:
                self.graphs[size, size] = self._build(start, (size, size))

    def _build(self, start: int, size: tuple[int, int]) -> OnnxNetwork | None:
        training = self.network.training
        try:
            return frozen_front(self.network.stages()[:start], size[0],
                                show_progress=self.show_progress)
        except (ImgclfError, OSError, RuntimeError, ValueError, TypeError) as error:
            console().print(f"PyTorch runs the frozen layers at {size[0]} px: onnxruntime "
                            f"could not ({error}).", style="yellow", markup=False,
                            highlight=False, soft_wrap=True)
            return None
        finally:
            self.network.train(training)  # the export put the stages in evaluation mode


def run_frozen(network: Classifier, images: torch.Tensor, start: int,
               front: FrozenFront | None = None) -> torch.Tensor:
    """What the first `start` stages make of images, without gradients: by the front where
    there is one (onnxruntime), else by PyTorch."""
    if front is not None and images.device.type == "cpu":
        return front(images, start)
    with torch.no_grad():
        return network.features(images, stop=start)


class _From(nn.Module):
    """The network from stage `start` on, for the forward loop (loop.batches)."""

    def __init__(self, network: Classifier, start: int):
        super().__init__()
        self.network, self.start = network, start
        self.multi_label = network.multi_label  # what its scores mean (loop.batches)

    def infer(self, features: torch.Tensor, *, embeddings: bool = False):
        return self.network.infer(features, embeddings=embeddings, start=self.start)


class _Stored:
    """A dataset of stored features: (features, target, index) at each position that was
    read, the picture's ImageError at each that was not (as the original dataset gives)."""

    def __init__(self, features: torch.Tensor, rows: dict[int, tuple[int, int]],
                 errors: dict[int, Any], count: int):
        self.features, self.rows, self.errors, self.count = features, rows, errors, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        if index in self.errors:
            return self.errors[index]
        row, target = self.rows[index]
        return self.features[row], target, index


@dataclass
class ValidationStart:
    """Validation passes that start after the frozen stages (see the module's docstring)."""

    max_bytes: int = MAX_BYTES
    stored: tuple[tuple, _Stored] | None = None  # (frozen_key, the dataset), once computed
    full_seconds: float | None = None  # the last pass that read every picture, whole network
    seconds: float | None = None  # the last pass scores() made, from the loader's start
    too_large: tuple | None = None  # the frozen_key whose output would not fit max_bytes
    loader: Any = None  # the validation DataLoader, kept: its worker starts once, not per epoch
    targets: Any = None  # the targets of the embeddings the last pass of scores() returned
    front: FrozenFront | None = None  # what runs the frozen stages, if not PyTorch

    def scores(self, network: Classifier, data, *, show_progress: bool = False
               ) -> tuple[dict[str, float], np.ndarray]:
        """(valid_loss, accuracy and error_rate, the pooled embeddings) of data's validation
        pictures that could be read, through run."""
        began = time.perf_counter()
        if self.loader is None:
            self.loader = data.loader("valid", augment=False, shuffle=False,
                                      batch_size=InferenceConfig.batch_size)
        outputs = self.run(network, self.loader, show_progress=show_progress)
        self.seconds = time.perf_counter() - began
        ok = outputs.ok
        targets = [t for t, good in zip(self.loader.dataset.targets, ok) if good]
        self.targets = np.asarray(targets)  # the embeddings' (multi-label thresholds)
        return loop.scores(outputs.probabilities[ok], targets), outputs.embeddings[ok]

    def run(self, network: Classifier, loader: torch.utils.data.DataLoader, *,
            show_progress: bool = False) -> loop.Outputs:
        """loop.run(network, loader, embeddings=True): probabilities and pooled embeddings of
        every validation picture, from stored features when they are still right."""
        options = {"embeddings": True, "show_progress": show_progress,
                   "description": "Validating", "transient": True}
        start = network.frozen_start()
        key = frozen_key(network, start) if start else None
        if start and key != self.too_large:
            if self.stored is None or self.stored[0] != key:
                began = time.perf_counter()
                dataset = self._store(network, loader, start, show_progress)
                self.stored = (key, dataset) if dataset is not None else None
                self.too_large = key if dataset is None else None
                if dataset is not None:
                    outputs = loop.run(_From(network, start), dataset, num_workers=0, **options)
                    self.full_seconds = time.perf_counter() - began
                    return outputs
            else:
                return loop.run(_From(network, start), self.stored[1], num_workers=0, **options)
        began = time.perf_counter()
        outputs = loop.run(network, loader, **options)
        self.full_seconds = time.perf_counter() - began
        return outputs

    def _store(self, network: Classifier, loader, start: int, show_progress: bool
               ) -> _Stored | None:
        """The frozen stages' output for every picture the loader reads; None (nothing kept)
        when it would take more than max_bytes."""
        count = len(loader.dataset)
        features: torch.Tensor | None = None
        rows: dict[int, tuple[int, int]] = {}  # position in the dataset -> (row, target)
        errors: dict[int, Any] = {}  # position -> its ImageError (datasets set the index)
        device = next(network.parameters()).device
        network.eval()
        batches = progress(read_ahead(loader) if not loader.num_workers else loader,
                           total=count, description="Validating",
                           enabled=show_progress, transient=True,
                           weight=lambda batch: (0 if batch[0] is None else len(batch[0]))
                           + len(batch[3]))
        with torch.inference_mode():
            for images, targets, indices, bad in batches:
                errors.update((error.index, error) for error in bad)
                if images is None:
                    continue
                images = images.to(device, memory_format=torch.channels_last)
                out = run_frozen(network, images, start, self.front)
                if features is None:
                    if out[0].numel() * out.element_size() * count > self.max_bytes:
                        return None
                    features = torch.empty((count, *out.shape[1:]), dtype=out.dtype,
                                           device=out.device)
                first = len(rows)
                features[first:first + len(out)] = out
                rows.update((index, (first + offset, target)) for offset, (index, target)
                            in enumerate(zip(indices.tolist(), targets.tolist())))
        if features is None or None in errors:  # nothing read, or an error of no position
            return None
        return _Stored(features[:len(rows)], rows, errors, count)


class _Batches:
    """An epoch's batches with a length, as steps.train_epoch takes a DataLoader."""

    def __init__(self, batches, length: int, *, reused: bool):
        self.batches, self.length, self.reused = batches, length, reused

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return self.length


class TrainingViews:
    """Whole-network epochs that reuse what the frozen stages made of their pictures.

    An epoch that reads pictures (decoded and augmented as always) runs each batch through
    the frozen stages, trains the rest of the network on the result and stores it; the
    epochs after it that reuse pictures (plan.reuses) train on the stored batches again,
    each reshuffled, with no decoding, augmenting or
    frozen stages at all (TrainConfig.reuse_views): "data echoing" (Choi et al., 2019) at the
    point where the network starts to learn. Batches are (features, targets, indices,
    errors), the training step told to start at stage `start`.
    """

    def __init__(self, network: Classifier, start: int, *, precision: str = "float32",
                 max_bytes: int = MAX_BYTES, front: FrozenFront | None = None):
        self.network, self.start, self.max_bytes = network, start, max_bytes
        self.frozen_front = front  # what runs the frozen stages, if not PyTorch
        self.bfloat16 = precision == "bfloat16"
        self.stored: tuple[tuple, torch.Tensor, torch.Tensor, torch.Tensor, list[int]] | None = None
        # True: the epochs plan.reuses names reuse stored pictures; False: none does; None:
        # not decided yet (the time limit decides during the first epoch, which stores them)
        self.reuse: bool | None = True
        self.too_large = False
        # seconds each batch of the last epoch that read pictures spent reading them and in
        # the frozen stages
        self.front: list[float] = []

    @classmethod
    def for_phase(cls, network: Classifier, config, phase, *, fitting: bool, one_size: bool,
                  parallel: bool, front: FrozenFront | None = None) -> TrainingViews | None:
        """The views of a whole-network phase (TrainConfig.reuse_views), or None where they
        cannot be: without frozen stages, in several processes, under progressive resizing.
        fitting: the time limit will fit the phase's epochs (and may decide on reuse)."""
        start = network.frozen_start()
        if (config.reuse_views is False or phase.frozen or not one_size or parallel
                or not 0 < start < len(network.stages())):
            return None
        views = cls(network, start, precision=config.precision, front=front)
        # the user's choice; else the time limit's, made (a resumed phase) or to make
        views.reuse = next((choice for choice in (config.reuse_views, phase.reuse_views)
                            if choice is not None), None if fitting else False)
        return views

    def front_seconds(self) -> float:
        """Seconds a batch of an epoch that reads pictures spends before the trained stages:
        what an epoch that reuses them saves per step. The first batch, which also waits for
        the loader to start, is left out as the training step's timing leaves it out."""
        timed = self.front[1:] or self.front
        return sum(timed) / max(1, len(timed))

    def drop(self) -> None:
        """Let the stored batches go (decided against reusing them)."""
        self.stored = None

    def epoch(self, loader, *, reuse: bool, seed: int, store: bool = True) -> _Batches:
        """The batches of one epoch: the stored ones again in an order drawn from seed when
        reuse is asked and they are still right, else the loader's pictures (stored unless
        store is False: the last epoch of a schedule has no next one)."""
        key = frozen_key(self.network, self.start)
        if reuse and self.reuse and self.stored is not None and self.stored[0] == key:
            sizes = self.stored[4]
            return _Batches(self._again(seed), len(sizes), reused=True)
        self.stored = None
        return _Batches(self._read(loader, key, store), len(loader), reused=False)

    def store(self, loader) -> None:
        """Read and store an epoch's pictures without training on them (a resumed run's
        reading epoch again); pictures too large to store are left unread."""
        for _ in self.epoch(loader, reuse=False, seed=0):
            if self.too_large:
                break

    def _read(self, loader, key: tuple, store: bool):
        device = next(self.network.parameters()).device
        features = targets = indices = None
        sizes: list[int] = []
        keep, count = store and not self.too_large, 0
        self.front = []
        batches = iter(loader)
        while True:
            began = time.perf_counter()
            try:
                images, labels, positions, errors = next(batches)
            except StopIteration:
                break
            if self.reuse is False:  # decided against while this epoch ran
                keep, features = False, None
            if images is not None:
                images = images.to(device, memory_format=torch.channels_last)
                if self.frozen_front is not None and device.type == "cpu":
                    images = self.frozen_front(images, self.start)
                else:
                    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                         enabled=self.bfloat16):
                        images = self.network.features(images, stop=self.start)
                if keep and features is None:
                    room = len(loader.dataset) + loader.batch_size
                    if images[0].numel() * images.element_size() * room > self.max_bytes:
                        keep, self.too_large = False, True
                    else:
                        features = torch.empty((room, *images.shape[1:]), dtype=images.dtype,
                                               device=images.device)
                        targets = torch.empty((room, *labels.shape[1:]), dtype=labels.dtype)
                        indices = torch.empty(room, dtype=positions.dtype)
                if keep and count + len(images) <= len(features):
                    features[count:count + len(images)] = images
                    targets[count:count + len(images)] = labels
                    indices[count:count + len(images)] = positions
                    count += len(images)
                    sizes.append(len(images))
                else:
                    keep = False
            self.front.append(time.perf_counter() - began)
            yield images, labels, positions, errors
        # the whole epoch ran: its batches can be trained on again
        self.stored = (key, features, targets, indices, sizes) if keep and sizes else None

    def _again(self, seed: int):
        _key, features, targets, indices, sizes = self.stored
        order = torch.randperm(sum(sizes), generator=torch.Generator().manual_seed(seed))
        first = 0
        for size in sizes:
            rows = order[first:first + size]
            first += size
            yield features[rows], targets[rows], indices[rows], []
