"""The probe's head: a logistic regression on embeddings, its regularisation chosen by
cross-validated loss (fit_linear_head; one per label for multi-label data,
fit_multi_label_head), whose weights become the network's linear layer (embeddings.fit_probe).
The rows it is fitted on are Embeddings, which embeddings.py computes and caches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from imgclf._progress import progress, status
from imgclf.config import TrainConfig
from imgclf.errors import ImageError


@dataclass(frozen=True)
class Embeddings:
    """Pooled features of pictures: one row per (picture, view)."""

    features: np.ndarray  # (rows, num_features)
    targets: np.ndarray  # (rows,) class index, or (rows, classes) 0/1 for multi-label data
    groups: np.ndarray  # (rows,) which picture a row comes from
    computed: int  # rows that were not in the cache
    errors: tuple[ImageError, ...] = ()  # pictures that could not be read for their rows


# Rows past which the head's regularisation is chosen on a share of them: the 35 fits of its
# cross-validation take seconds on hymenoptera's 245 pictures but 5 minutes on 3,040 rows of
# 120 classes, and the time grows with the rows (bench/scale.py).
SEARCH_ROWS = 2000


@dataclass(frozen=True)
class HeadFit:
    """A fitted linear head: weight (classes, features), bias (classes,) and how it was chosen."""

    weight: np.ndarray
    bias: np.ndarray
    regularisation: float  # scikit-learn's C: larger means less regularised
    cv_accuracy: float | None
    cv_loss: float | None = None  # the chosen C's cross-validated log loss


def fit_linear_head(embeddings: Embeddings, num_classes: int, *,
                    candidates: Sequence[float] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
                    folds: int = 5, seed: int = TrainConfig.seed,
                    show_progress: bool = False) -> HeadFit:
    """Multinomial logistic regression (L-BFGS); C chosen by grouped cross-validated log loss.

    Views of one picture always fall in the same fold, so the choice is not fooled by a
    picture's augmented twin. With fewer than 2 pictures per class in some fold, a middle C
    is used without cross-validation. Past SEARCH_ROWS rows, C is chosen on a seeded share of
    the pictures of every class (3 folds), and only the final fit sees them all.

    The features are standardised first (centred, each divided by its spread or the median
    spread, whichever is larger; the scaling is folded back into the returned weight and
    bias), and each fold's fits go from the most to the least regularised C, each starting
    from the last one's solution. On raw EfficientNet features L-BFGS needed 150-360
    iterations a fit, and blood-cells' 1,920 embeddings took 167 s; standardised and
    warm-started, 14 s, and a lower validation loss (blood-cells 0.307 -> 0.278,
    hymenoptera 0.073 -> 0.065; bench/accuracy.py).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold

    centre, spread = standard_scale(embeddings.features)
    standard = ((embeddings.features - centre) / spread).astype(np.float32)
    embeddings = replace(embeddings, features=standard)
    everything = embeddings.features, embeddings.targets
    if len(embeddings.features) > SEARCH_ROWS:
        rows = _search_rows(embeddings, SEARCH_ROWS, seed)
        features, targets, groups = (embeddings.features[rows], embeddings.targets[rows],
                                     embeddings.groups[rows])
        folds = min(folds, 3)
    else:
        features, targets, groups = embeddings.features, embeddings.targets, embeddings.groups
    per_class = np.bincount(targets[_first_rows(groups)], minlength=num_classes)
    folds = int(min(folds, per_class[per_class > 0].min())) if per_class.any() else 0
    best_c, best_score, best_loss = 1.0, None, None
    if folds >= 2 and len(candidates) > 1:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        splits = list(splitter.split(features, targets, groups))
        # one model per fold, refitted from its last solution as C grows (warm start)
        fold_models = [LogisticRegression(max_iter=2000, warm_start=True) for _ in splits]
        for c in progress(sorted(candidates), total=len(candidates), enabled=show_progress,
                          description="Fitting the head (choosing its regularisation)",
                          transient=True):
            losses, hits = [], []
            for model, (train_rows, test_rows) in zip(fold_models, splits):
                model.set_params(C=c)
                model.fit(features[train_rows], targets[train_rows])
                probabilities = model.predict_proba(features[test_rows])
                columns = np.searchsorted(model.classes_, targets[test_rows])
                true = probabilities[np.arange(len(test_rows)), columns]
                losses.append(-np.log(np.clip(true, 1e-12, 1)).mean())
                hits.append(model.score(features[test_rows], targets[test_rows]))
            # log loss, not accuracy, picks C: on a few dozen pictures accuracy moves in
            # coarse steps and ties, while the loss also rewards well-judged confidence
            loss = float(np.mean(losses))
            if best_loss is None or loss < best_loss - 1e-9:
                best_c, best_loss, best_score = c, loss, float(np.mean(hits))
    model = LogisticRegression(C=best_c, max_iter=2000)
    # past a few thousand rows this fit takes a minute or more (bench/scale.py)
    with status(f"Fitting the head on {len(everything[0])} embeddings",
                enabled=show_progress and len(everything[0]) > SEARCH_ROWS):
        model.fit(*everything)
    weight, bias = _full_weights(model, num_classes)
    # w . (x - centre) / spread + b  ==  (w / spread) . x + (b - (w / spread) . centre)
    weight = (weight / spread).astype(np.float32)
    bias = (bias - weight @ centre).astype(np.float32)
    return HeadFit(weight, bias, best_c, best_score, best_loss)


def fit_multi_label_head(embeddings: Embeddings, num_classes: int, *,
                         candidates: Sequence[float] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
                         folds: int = 3, seed: int = TrainConfig.seed,
                         show_progress: bool = False) -> HeadFit:
    """One logistic regression per label (one-vs-rest) on multi-label 0/1 targets
    (rows, labels); each label's C chosen by its grouped cross-validated log loss.

    The features are standardised as in fit_linear_head, and each fold's fits go from the most
    to the least regularised C, warm-started. A label that is on every training picture of a
    fold, or on none, is a constant there (its share, clipped). Returns the head's weight
    (labels, features) and bias for sigmoid outputs; regularisation is the median chosen C,
    cv_accuracy the share of (picture, label) pairs right at 0.5 (fastai's accuracy_multi).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    centre, spread = standard_scale(embeddings.features)
    features = ((embeddings.features - centre) / spread).astype(np.float32)
    targets, groups = embeddings.targets.astype(np.int64), embeddings.groups
    searched = np.arange(len(features))
    if len(features) > SEARCH_ROWS:  # C is chosen on a seeded share of the pictures
        chosen = np.random.default_rng(seed).permutation(np.unique(groups))
        searched = np.flatnonzero(np.isin(groups, chosen[:SEARCH_ROWS * len(chosen)
                                                         // len(features)]))
    folds = min(folds, len(np.unique(groups[searched])))
    best_c = np.full(num_classes, 1.0)
    losses = np.full((len(candidates), num_classes), np.inf)
    held_out = np.zeros((len(candidates), len(searched), num_classes))
    if folds >= 2 and len(candidates) > 1:
        # GroupKFold is deterministic; the rows are shuffled by seed first
        order = np.random.default_rng(seed).permutation(searched)
        splits = list(GroupKFold(n_splits=folds).split(order, groups=groups[order]))
        position = {row: i for i, row in enumerate(searched)}
        steps = [(label, fold) for label in range(num_classes) for fold in range(len(splits))]
        for label, fold in progress(steps, total=len(steps), enabled=show_progress,
                                    description="Fitting the head (one model per label)",
                                    transient=True):
            train_rows, test_rows = order[splits[fold][0]], order[splits[fold][1]]
            model = LogisticRegression(max_iter=2000, warm_start=True)
            for index, c in enumerate(sorted(candidates)):
                probability = _binary_fit(model.set_params(C=c), features[train_rows],
                                          targets[train_rows, label], features[test_rows])
                held_out[index, [position[row] for row in test_rows], label] = probability
        truth = targets[searched]
        clipped = np.clip(held_out, 1e-7, 1 - 1e-7)
        losses = -(truth * np.log(clipped) + (1 - truth) * np.log(1 - clipped)).mean(axis=1)
        best_c = np.asarray(sorted(candidates))[losses.argmin(axis=0)]
    weight = np.zeros((num_classes, features.shape[1]))
    bias = np.zeros(num_classes)
    with status(f"Fitting the head on {len(features)} embeddings",
                enabled=show_progress and len(features) > SEARCH_ROWS):
        for label in range(num_classes):
            model = LogisticRegression(C=float(best_c[label]), max_iter=2000)
            column = targets[:, label]
            if column.min() == column.max():  # on every picture, or on none: a constant
                bias[label] = _logit(np.clip(column.mean(), 1e-4, 1 - 1e-4))
                continue
            model.fit(features, column)
            weight[label], bias[label] = model.coef_[0], model.intercept_[0]
    # w . (x - centre) / spread + b  ==  (w / spread) . x + (b - (w / spread) . centre)
    weight = (weight / spread).astype(np.float32)
    bias = (bias - weight @ centre).astype(np.float32)
    if not np.isfinite(losses).all():
        return HeadFit(weight, bias, float(np.median(best_c)), None, None)
    picked = held_out[losses.argmin(axis=0), :, np.arange(num_classes)].T  # (rows, labels)
    accuracy = float(((picked >= 0.5) == targets[searched]).mean())
    return HeadFit(weight, bias, float(np.median(best_c)), accuracy,
                   float(losses.min(axis=0).mean()))


def _binary_fit(model: Any, features: np.ndarray, column: np.ndarray, test: np.ndarray
                ) -> np.ndarray:
    """P(label) of the test rows from a logistic regression fitted on one label's column (a
    constant, its clipped share, when the column holds one value)."""
    if column.min() == column.max():
        return np.full(len(test), np.clip(column.mean(), 1e-4, 1 - 1e-4))
    model.fit(features, column)
    return model.predict_proba(test)[:, 1]


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def standard_scale(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centre, spread) of each feature for (features - centre) / spread: the mean, and the
    standard deviation or the median one, whichever is larger.

    No feature is scaled up past the typical one: a feature that hardly varies would
    otherwise get a weight hundreds of times the others', which fine-tuning from this head
    cannot survive (blood-cells: largest weight 235, and a whole-network epoch from it
    validated at loss 0.44 against the probe's 0.31).
    """
    centre, spread = features.mean(axis=0), features.std(axis=0)
    floor = float(np.median(spread))
    return centre, np.maximum(spread, floor if floor > 1e-6 else 1.0)


def _search_rows(embeddings: Embeddings, limit: int, seed: int) -> np.ndarray:
    """Rows of about `limit`: whole pictures (every view), an equal seeded share of each
    class's, so that every class takes part in choosing C."""
    rng = np.random.default_rng(seed)
    first = _first_rows(embeddings.groups)
    pictures_of = {label: embeddings.groups[first][embeddings.targets[first] == label]
                   for label in np.unique(embeddings.targets)}
    views = max(1, round(len(embeddings.groups) / len(first)))
    share = max(2, limit // (views * len(pictures_of)))
    chosen = np.concatenate([rng.permutation(groups)[:share] for groups in pictures_of.values()])
    return np.flatnonzero(np.isin(embeddings.groups, chosen))


def _first_rows(groups: np.ndarray) -> np.ndarray:
    _, first = np.unique(groups, return_index=True)
    return first


def _full_weights(model: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Logistic-regression coefficients as a (classes, features) softmax layer."""
    coef, intercept = model.coef_, model.intercept_
    if coef.shape[0] == 1:  # binary: one logit for class 1; softmax needs two, half each way
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = np.zeros((num_classes, coef.shape[1]))
    bias = np.full(num_classes, -1e4)  # a class with no training pictures is never predicted
    for row, label in enumerate(model.classes_):
        weight[label], bias[label] = coef[row], intercept[row]
    return weight.astype(np.float32), bias.astype(np.float32)
