"""The "unknown" answer: how far a picture lies from the training pictures of the class it is
given, and how unsure the classifier is.

Softmax always names a class: an ants-vs-bees model calls a car "bees 97%". The detector
here scores how strange a picture is (higher = stranger) from what the forward loop computes in
one pass: the cosine distance from its pooled backbone embedding to the k-th nearest training
picture of the predicted class (Sun et al. 2022, "Out-of-distribution detection with deep
nearest neighbors", made class-conditional), plus SOFTMAX_WEIGHT x (1 - the top probability).
bench/unknown.py compared it with the softmax baseline, energy, max logit, (relative)
Mahalanobis distance and plain k-nearest-neighbour distance: see the constants below.

The threshold is calibrated, not guessed: it accepts a chosen share of in-domain pictures
(validation pictures, or the training pictures each left out of the bank in turn when there
is no validation split). Their scores are kept in the model file, so the share can be changed
when the model is loaded. Everything is tensors (the detector is part of the network's state)
plus an UnknownConfig in the model file's JSON; the ONNX export computes the same score.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from imgclf.calibration import threshold_for, too_few_beyond
from imgclf.config import (DEFAULT_ACCEPTANCE, KNN_K, SOFTMAX_WEIGHT, TrainConfig,
                           UnknownConfig)

# Training pictures kept in the model file (float16): 2048 x 1280 features is 5 MB, the most
# the detector may add to a model file. Larger training sets keep a random (seeded) sample.
MAX_BANK = 2048

class Detector(nn.Module):
    """Outlier scores from class scores and embeddings (see the module's docstring).

    Buffers: ``bank`` (training embeddings, L2-normalised, float16), ``labels`` (their
    classes) and ``calibration`` (the sorted scores of the in-domain pictures the threshold
    was chosen on). ``rows``: which of the embeddings fit_detector was given are in the bank,
    in bank order (None for a detector loaded from a file); ``pictures``: their files'
    paths, when the caller knows them (ModelInfo.bank_pictures).
    """

    def __init__(self, bank: torch.Tensor, labels: torch.Tensor, calibration: torch.Tensor, *,
                 k: int = KNN_K, softmax_weight: float = SOFTMAX_WEIGHT, by_class: bool = True):
        super().__init__()
        self.k, self.softmax_weight = k, softmax_weight
        # False (multi-label models, score "knn"): the nearest training pictures whatever their
        # labels, and no softmax term (their outputs are not one distribution)
        self.by_class = by_class
        self.register_buffer("bank", nn.functional.normalize(bank.float(), dim=1).half())
        self.register_buffer("labels", labels.long())
        self.register_buffer("calibration", calibration.float().sort().values)
        self.rows: torch.Tensor | None = None
        self.pictures: tuple[str, ...] = ()

    def forward(self, logits: torch.Tensor, embeddings: torch.Tensor, *,
                exclude: torch.Tensor | None = None) -> torch.Tensor:
        """exclude: for each row, a bank row to leave out (itself, when scoring the bank)."""
        queries = nn.functional.normalize(embeddings.float(), dim=1)
        similarity = queries @ self.bank.float().T
        if self.by_class:
            predicted = logits.argmax(dim=1, keepdim=True)
            others = self.labels.unsqueeze(0) != predicted
        else:
            others = torch.zeros_like(similarity, dtype=torch.bool)
        if exclude is not None:
            others = others | (torch.arange(len(self.bank)).unsqueeze(0) == exclude.unsqueeze(1))
        similarity = similarity.masked_fill(others, -1.0)  # cosine similarity is >= -1
        distance = 1 - similarity.topk(self.k, dim=1).values[:, -1]
        if not self.by_class:
            return distance
        unsure = 1 - logits.float().softmax(dim=1).amax(dim=1)
        return distance + self.softmax_weight * unsure

    def threshold(self, acceptance: float) -> float:
        """The score at or below which at least `acceptance` of the calibration pictures lie
        (calibration.threshold_for)."""
        return threshold_for(self.calibration.cpu().numpy(), acceptance)

    @classmethod
    def empty(cls, bank_size: int, num_features: int, calibration_size: int,
              config: UnknownConfig) -> Detector:
        """A detector of the right shapes for load_state_dict (loading a model file)."""
        return cls(torch.ones(bank_size, num_features), torch.zeros(bank_size),
                   torch.zeros(calibration_size), k=config.k,
                   softmax_weight=config.softmax_weight, by_class=config.score != "knn")


# With pictures of none of the classes (an _unknown folder), these settings are tried and the
# one that calls most of them unknown at the chosen acceptance is kept.
TUNING = tuple((k, weight) for k in (1, 5, 10, 20) for weight in (0.0, 0.2, 0.5))


def fit_detector(train: torch.Tensor, train_targets: torch.Tensor, head: nn.Module, *,
                 valid: torch.Tensor | None = None, negatives: torch.Tensor | None = None,
                 acceptance: float = DEFAULT_ACCEPTANCE, seed: int = TrainConfig.seed,
                 by_class: bool = True) -> tuple[Detector, UnknownConfig]:
    """A detector from training embeddings, calibrated on validation embeddings.

    head: the network's head, which turns embeddings into class scores. Without validation
    embeddings, or with too few to place the threshold (too_few_beyond), each training picture
    is scored with its own row left out of the bank (no picture vouches for itself) and those
    scores count too.
    negatives: embeddings of pictures of none of the classes; with them, k and the softmax
    weight are chosen from TUNING (most of them called unknown, then the higher AUROC), and the
    share called unknown is reported.
    by_class: False for multi-label models (score "knn"): every training picture is a
    neighbour of every picture, and there is no softmax term.
    """
    # the groups the bank is sampled by and k is bounded by: the classes, or one group (a
    # multi-label model's train_targets are each picture's labels as a bitmask, kept in the
    # bank's labels for explanations to name, never compared)
    groups = train_targets if by_class else torch.zeros_like(train_targets)
    keep = _sample(groups, MAX_BANK, seed)
    bank, labels = train[keep], train_targets[keep]
    largest_k = max(1, int(torch.bincount(groups[keep]).clamp_min(1).min()) - 1)
    use_negatives = negatives is not None and len(negatives) > 0
    tried = TUNING if use_negatives else [(KNN_K, SOFTMAX_WEIGHT)]
    if not by_class:
        tried = [(k, 0.0) for k, _weight in tried]
    use_valid = valid is not None and len(valid) > 0
    # judged at the default acceptance too: the scores are kept, and a model trained at 0.95
    # is loaded at the default (Predictor.set_acceptance warns past what they can place)
    use_train = not use_valid or too_few_beyond(len(valid), max(acceptance, DEFAULT_ACCEPTANCE))
    # a picture alone in its class has no neighbour of its class once left out
    alone = torch.bincount(groups[keep])[groups[keep]] < 2
    source = " + ".join(["valid"] * use_valid + ["train (left out)"] * use_train)
    best = None
    with torch.no_grad():  # class scores once; each setting only re-ranks the neighbours
        valid_logits = head(valid) if use_valid else None
        bank_logits = head(bank) if use_train else None
        negative_logits = head(negatives) if use_negatives else None
        for k, weight in dict.fromkeys((min(k, largest_k), w) for k, w in tried):
            detector = Detector(bank, labels, torch.zeros(0), k=k, softmax_weight=weight,
                                by_class=by_class)
            scores = [detector(valid_logits, valid)] if use_valid else []
            if use_train:
                left_out = detector(bank_logits, bank, exclude=torch.arange(len(bank)))
                scores.append(left_out[~alone])
            calibration = torch.cat(scores)
            detector.calibration = calibration.sort().values
            config = UnknownConfig(score="class_knn+softmax" if by_class else "knn", k=k,
                                   softmax_weight=weight, acceptance=acceptance,
                                   threshold=detector.threshold(acceptance),
                                   calibrated_on=source, bank_size=len(bank))
            if use_negatives:
                strange = detector(negative_logits, negatives).numpy()
                flagged = float((strange > config.threshold).mean())
                config = dataclasses.replace(config, negatives=len(negatives),
                                             negatives_flagged=flagged)
                key = (flagged, _auroc(calibration.numpy(), strange))
            else:
                key = (0.0, 0.0)
            if best is None or key > best[0]:
                best = (key, detector, config)
    best[1].rows = keep
    return best[1], best[2]


def _auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    return float(roc_auc_score(labels, np.r_[inside, outside]))


def _sample(targets: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """Indices of at most about `limit` rows, in order: every class keeps up to an equal share
    (drawn at random, seeded), so a rare class is never left out of the bank."""
    if len(targets) <= limit:
        return torch.arange(len(targets))
    generator = torch.Generator().manual_seed(seed)
    classes = torch.unique(targets)
    share = max(KNN_K + 1, limit // len(classes))
    keep = []
    for label in classes:
        rows = torch.nonzero(targets == label).flatten()
        keep.append(rows[torch.randperm(len(rows), generator=generator)[:share]])
    return torch.cat(keep).sort().values
