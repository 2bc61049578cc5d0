"""Fast path: cached backbone embeddings and a head fitted on them in seconds ("probe" mode).

Each picture's pooled backbone features are computed once and kept on disk, keyed by the
file's content hash, the backbone and the preprocessing, so a second run, or a run with one
more class, computes only the new pictures. Training pictures also get a few augmented views
(seeded per picture, so they are cached too). A logistic regression, its regularisation chosen
by cross-validation on the training pictures, becomes the head's linear layer: the result is
the same network and model file as fine-tuning (the fit itself: head_fit.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from imgclf._files import file_sha256, known_sha256, save_array
from imgclf._progress import console
from imgclf.cache import cache_folder
from imgclf.calibration import DEFAULT_THRESHOLD, best_thresholds
from imgclf.config import MAX_LABEL_BITS, InferenceConfig, UnknownConfig
from imgclf.data.datasets import StoredViews, inference_workers
from imgclf.data.decoding import load_image
from imgclf.data.sources import SPLITS
from imgclf.data.transforms import eval_parts, eval_transform, train_transform
from imgclf.errors import ImageError
from imgclf.inference import graphs, loop
from imgclf.inference.runtimes import accelerated
from imgclf.model import Classifier
from imgclf.training.head_fit import Embeddings, fit_linear_head, fit_multi_label_head
from imgclf.unknown import Detector, fit_detector

if TYPE_CHECKING:
    from imgclf.data.imagedata import ImageData


class _Pictures:
    """Dataset of the pictures whose embeddings are missing, each read once for all its views.

    Item i -> (its views' tensors, stacked; -1; their row numbers) or an ImageError. The plain
    view (0) comes from the picture's stored square view (decoded from the original only when
    there is none), exactly as Predictor would see the original; augmented views (1, 2, ...)
    are seeded random crops of the training copy, the file fine-tuning trains on.
    """

    def __init__(self, jobs: list[tuple[Path, Path, str, list[int], list[int]]],
                 stored: StoredViews, augmented):
        # (original, training copy, content hash, views, their rows), stored: plain views
        self.jobs, self.stored, self.augmented = jobs, stored, augmented

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int):
        original, copy, digest, views, rows = self.jobs[index]
        tensors = []
        try:
            picture = None
            for view in views:
                if view == 0:
                    tensors.append(self.stored.read(index, original))
                    continue
                if picture is None:
                    picture = load_image(copy)
                with torch.random.fork_rng(devices=[]):  # the caller's random state stays
                    torch.manual_seed(int(digest[:12], 16) + view)  # the same view every run
                    tensors.append(self.augmented(picture))
        except ImageError as error:
            return error
        return torch.stack([torch.as_tensor(view) for view in tensors]), -1, rows


def _collate_rows(items: list):
    """collate for _Pictures: every view of every picture is a row of one batch."""
    good = [item for item in items if not isinstance(item, ImageError)]
    errors = [item for item in items if isinstance(item, ImageError)]
    if not good:
        return None, None, None, errors
    rows = torch.tensor([row for item in good for row in item[2]])
    return torch.cat([item[0] for item in good]), torch.full_like(rows, -1), rows, errors


def embedding_folder(data: ImageData) -> Path:
    """Cache folder for one backbone and preprocessing (any change gives a new folder)."""
    # version 7: large JPEGs decoded at reduced scale (data.transforms.Square.decode_size);
    # 6: augmented views resample bilinearly (data.transforms.TRAIN_INTERPOLATION)
    key = json.dumps({"version": 7, "backbone": data.backbone, "input": data.input.to_dict(),
                      "augment": data.augment.to_dict() if data.augment else None,
                      # augmented views are crops of the training copies, if any
                      "copies": data.config.cache,
                      **({"weights": known_sha256(data.weights)} if data.weights else {})},
                     sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_folder("embeddings") / data.backbone / digest


def compute_embeddings(network: Classifier, data: ImageData, split: str, *, views: int = 1,
                       batch_size: int = InferenceConfig.batch_size, show_progress: bool = True,
                       runtime: str = InferenceConfig.runtime,
                       description: str | None = None) -> Embeddings:
    """Pooled features of a split's pictures: view 0 plus `views - 1` augmented views each.

    description: the progress bar's (default "Embedding <split> pictures").

    Cached rows are read from disk; only missing ones go through the network (by default
    through onnxruntime on the CPU, see inference.runtimes.accelerated), and each batch is saved as
    it is done, so an interrupted run keeps what it computed.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    folder = embedding_folder(data)
    items = data.labelled(split)
    rows = []  # (cache file, class, picture) of every view of every picture
    found: dict[int, np.ndarray] = {}  # row -> its embedding, read or computed in this call
    errors: list[ImageError] = []
    jobs, stored, items_to_read = [], [], []
    for position, item in enumerate(items):
        digest = data.hashes.get(item.path) or file_sha256(item.path)
        missing = []
        for view in range(views):
            target = folder / digest[:2] / f"{digest}_{view}.npy"
            cached = _read_cached(target, network.backbone.num_features)
            if cached is None:
                missing.append((view, len(rows)))
            else:
                found[len(rows)] = cached
            rows.append((target, data.target(item), position))
        if missing:
            jobs.append((item.path, data.source(item), digest, [v for v, _ in missing],
                         [len(stored) + i for i in range(len(missing))]))
            stored.extend(row for _, row in missing)
            items_to_read.append(item)
    if jobs:
        views_of = data.stored_views(items_to_read) or StoredViews(
            [None] * len(jobs), *eval_parts(data.input))
        dataset = _Pictures(jobs, views_of,
                            # augmented views at the size of the plain one: one head sees both
                            train_transform(replace(data.input, train_size=None), data.augment))
        workers = (inference_workers() if data.config.num_workers is None
                   else data.config.num_workers) if len(jobs) > 1 else 0
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=max(1, batch_size // views), num_workers=workers,
            collate_fn=_collate_rows)
        runner = accelerated(network, data.input.image_size, runtime=runtime,
                             embeddings_only=True, show_progress=show_progress)
        for batch in loop.batches(runner, loader, total=len(stored), probabilities=False,
                                  embeddings=True, show_progress=show_progress,
                                  description=description or f"Embedding {split} pictures"):
            errors.extend(batch.errors)
            for job_row, embedding in zip(batch.indices,
                                          batch.embeddings if batch.indices else ()):
                row = stored[job_row]
                found[row] = embedding.astype(np.float32)
                # kept in memory as well: a cache entry deleted from now on (imgclf cache
                # --clear in another shell) costs a recomputation next run, never a row here
                save_array(rows[row][0], found[row])
    # a row without an embedding is a picture that could not be read (its error was listed)
    present = [row for row in range(len(rows)) if row in found]
    if not present:
        raise ValueError(f"No {split} picture could be embedded.")
    return Embeddings(features=np.stack([found[row] for row in present]),
                      targets=np.array([rows[row][1] for row in present]),
                      groups=np.array([rows[row][2] for row in present]),
                      computed=len(stored), errors=tuple(errors))


def _read_cached(path: Path, width: int) -> np.ndarray | None:
    """A cached embedding, or None when it is missing, damaged or not `width` numbers (then
    it is computed again): the cache is never trusted blindly."""
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if values.shape != (width,) or values.dtype != np.float32 or not np.isfinite(values).all():
        return None
    return values


def plain_embeddings(network: Classifier, data: ImageData, split: str, *, cached: bool,
                     show_progress: bool = True) -> Embeddings:
    """The plain (evaluation) view's embedding of every picture of a split, read from the
    originals as Predictor reads them.

    cached: the network's backbone is the pretrained one the cache was made with (probe mode,
    head-only epochs); otherwise one pass of the forward loop with these weights.
    """
    if cached:
        return compute_embeddings(network, data, split, show_progress=show_progress)
    items = data.labelled(split)
    outputs = loop.run(network, data.plain(items), embeddings=True, probabilities=False,
                  num_workers=data.config.num_workers, show_progress=show_progress,
                  description=f"Embedding {split} pictures")
    ok = outputs.ok
    features = outputs.embeddings[ok]
    return Embeddings(features=features,
                      targets=np.array([data.target(item) for item, good in zip(items, ok)
                                        if good]),
                      groups=np.flatnonzero(ok), computed=int(ok.sum()))


def cached_outputs(network: Classifier, data: ImageData, split: str, *,
                   show_progress: bool = True) -> loop.Outputs:
    """What the forward loop gives for a split's labelled pictures (probabilities, pooled
    embeddings, outlier scores), from the cached embeddings: the head and the detector run on
    them, not the whole network on the pictures.

    Only for a network whose backbone is the pretrained one the cache was made with (the
    probe, head-only epochs) and whose head pools by averaging. Rows follow
    ``data.labelled(split)``; a picture that could not be embedded has NaN rows, ok False.
    """
    found = compute_embeddings(network, data, split, show_progress=show_progress)
    network.eval()
    device = next(network.parameters()).device
    with torch.inference_mode():
        pooled = torch.from_numpy(found.features).to(device)
        logits = network.head(pooled)
        outlier = network.detector(logits, pooled) if network.detector is not None else None
    items = data.labelled(split)
    count = len(items)
    ok = np.zeros(count, dtype=bool)
    ok[found.groups] = True
    reasons = {error.source: error.reason for error in found.errors}

    def place(rows: np.ndarray) -> np.ndarray:
        table = np.full((count, *rows.shape[1:]), np.nan, dtype=np.float32)
        table[found.groups] = rows
        return table

    return loop.Outputs(
        probabilities=place(graphs.probabilities(logits.float().cpu().numpy(), data.multi_label)),
        embeddings=place(found.features),
        outlier=place(outlier.float().cpu().numpy()) if outlier is not None else None,
        errors=[ImageError(str(items[i].path), reasons.get(str(items[i].path),
                                                       "could not be read"), i)
                for i in np.flatnonzero(~ok).tolist()], ok=ok)


def picture_embeddings(network: Classifier, data: ImageData, paths: Sequence[Path], *,
                       show_progress: bool = True, description: str = "Embedding pictures"
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings of the readable pictures, which were readable): one pass of the loop."""
    outputs = loop.run(network, list(paths), transform=eval_transform(data.input), embeddings=True,
                  probabilities=False, num_workers=data.config.num_workers,
                  show_progress=show_progress, description=description)
    return outputs.embeddings[outputs.ok], outputs.ok


def fit_unknown(network: Classifier, data: ImageData, valid: np.ndarray | None, *,
                cached: bool, acceptance: float, seed: int, show_progress: bool = True
                ) -> tuple[Detector, UnknownConfig] | None:
    """The "unknown" detector of a trained network: its training pictures' embeddings as the
    bank, calibrated on the validation embeddings `valid` and tuned on data.negatives (an
    _unknown folder), if any (unknown.fit_detector), with the paths of its bank's pictures
    (Detector.pictures). None for heads it cannot serve yet.

    cached: the backbone is the pretrained one (probe mode): the bank is read from the cache.
    """
    if network.head.config.pool != "avg":  # its logits need unpooled features
        console().print("[yellow]No unknown detector for pool='concat' heads yet: this model "
                        "will always name a class.")
        return None
    bank = plain_embeddings(network, data, "train", cached=cached, show_progress=show_progress)
    network.eval()
    device = next(network.parameters()).device

    def head(embeddings: torch.Tensor) -> torch.Tensor:
        return network.head(embeddings.to(device)).float().cpu()

    negatives = None
    if data.negatives:
        negatives = torch.from_numpy(picture_embeddings(
            network, data, data.negatives, show_progress=show_progress,
            description="Embedding the unknown folder")[0])
    # multi-label: the distance to the nearest training pictures whatever their labels; the
    # bank keeps each picture's labels as a bitmask, for explanations to name
    classes = label_bits(bank.targets) if data.multi_label else bank.targets
    detector, config = fit_detector(
        torch.from_numpy(bank.features), torch.from_numpy(classes), head,
        valid=torch.from_numpy(valid) if valid is not None and len(valid) else None,
        negatives=negatives, acceptance=acceptance, seed=seed, by_class=not data.multi_label)
    items = data.labelled("train")
    detector.pictures = tuple(str(Path(items[bank.groups[row]].path).resolve())
                              for row in detector.rows.tolist())
    return detector, config


def label_thresholds(network: Classifier, valid: np.ndarray | None,
                     targets: np.ndarray | None) -> tuple[float, ...]:
    """A multi-label network's threshold for each label: the best F1 on the validation
    pictures' embeddings `valid` (calibration.best_thresholds); DEFAULT_THRESHOLD without
    them, or for a head that is not a linear layer on pooled features."""
    labels = network.head.linear.out_features
    if valid is None or targets is None or not len(valid) or network.head.config.pool != "avg":
        return (DEFAULT_THRESHOLD,) * labels
    network.eval()
    with torch.inference_mode():
        logits = network.head(torch.from_numpy(valid).to(next(network.parameters()).device))
    return tuple(best_thresholds(graphs.probabilities(logits.float().cpu().numpy(), True),
                                 targets))


def label_bits(targets: np.ndarray) -> np.ndarray:
    """Multi-label 0/1 rows as one integer each (bit j: label j), 0 past MAX_LABEL_BITS labels
    (the explanation then names no label)."""
    if targets.shape[1] > MAX_LABEL_BITS:
        return np.zeros(len(targets), np.int64)
    return (targets.astype(np.int64) << np.arange(targets.shape[1])).sum(axis=1)


def fit_probe(network: Classifier, data: ImageData, *, views: int, seed: int,
              show_progress: bool = True) -> dict[str, Any]:
    """Fit the network's linear head on cached training embeddings (the probe phase).

    Returns the figures of a history row: train_loss, the regularisation chosen, the
    cross-validated accuracy and loss, embeddings used and computed.
    """
    import torch.nn.functional as F

    head = network.head.config
    if head.pool != "avg" or head.hidden:
        raise ValueError("probe fits a linear layer on average-pooled features: use the "
                         "default HeadConfig (pool='avg', hidden=0)")
    train = compute_embeddings(network, data, "train", views=views, show_progress=show_progress)
    fitter = fit_multi_label_head if data.multi_label else fit_linear_head
    fit = fitter(train, len(data.classes), seed=seed, show_progress=show_progress)
    linear = network.head.linear
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(fit.weight))
        linear.bias.copy_(torch.from_numpy(fit.bias))
        logits = network.head(torch.from_numpy(train.features).to(linear.weight.device))
    logits, targets = logits.float().cpu(), torch.from_numpy(train.targets)
    train_loss = float(F.binary_cross_entropy_with_logits(logits, targets) if data.multi_label
                       else F.cross_entropy(logits, targets))
    return {"train_loss": train_loss, "regularisation": fit.regularisation,
            "cv_accuracy": fit.cv_accuracy, "cv_loss": fit.cv_loss,
            "embeddings": len(train.features),
            "computed": train.computed}


def side_by_side(parts: list[np.ndarray], scales: list[float] | None = None) -> np.ndarray:
    """Several backbones' embeddings of the same pictures as one array: each divided by its
    mean row length (`scales`, default each part's own), so that no backbone outweighs
    another in a distance or a regularised fit."""
    if len(parts) == 1:
        return parts[0]
    scales = scales or [float(np.linalg.norm(part, axis=1).mean()) for part in parts]
    return np.concatenate([part / max(scale, 1e-12) for part, scale in zip(parts, scales)],
                          axis=1).astype(np.float32)
