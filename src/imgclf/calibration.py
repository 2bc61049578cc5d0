"""Thresholds, numpy alone: the unknown answer's, from the in-domain scores it is calibrated
on, and a multi-label model's per-label decision thresholds, from its validation pictures.

A model loaded without torch (inference/graphs.py) can still move its threshold to another
acceptance. unknown.py fits the detector whose scores these are.
"""

from __future__ import annotations

import math

import numpy as np

# A quantile of the validation pictures' scores rests on the few of them above it: with fewer
# than this many there (fewer than 299 validation pictures at 98% acceptance, 119 at 95%), the
# training pictures' scores, each with itself left out of the bank, are added to them.
# bench/trust.py, 20 seeds at 98% with the interpolated quantile used until 2026-12-04:
# hymenoptera's 153 validation pictures alone (3 above the threshold) let 7% of far strangers
# through on one seed; with the training pictures' 220 scores added, none on any seed, and
# 98.0% of held-out training pictures still accepted (98.8% before). With the conformal
# quantile: the worst seed lets 2.1% through, 98.6% accepted. Blood-cells (480 validation
# pictures) keeps its validation scores alone:
# there the training pictures, which the head fits closely, score lower and would tighten the
# threshold to about 95% acceptance.
MIN_BEYOND = 5


def too_few_beyond(pictures: int, acceptance: float) -> bool:
    """Whether fewer than MIN_BEYOND of `pictures` calibration scores would lie above the
    threshold accepting `acceptance` of them (then more scores are needed to place it)."""
    return scores_beyond(pictures, acceptance) < MIN_BEYOND


def scores_beyond(pictures: int, acceptance: float) -> int:
    """How many of `pictures` calibration scores lie above threshold_for's threshold."""
    return pictures - _rank(pictures, acceptance)


def _rank(pictures: int, acceptance: float) -> int:
    """The split-conformal rank: ceil((n + 1) x acceptance), at most n (1-based; 0 for no
    scores)."""
    if not 0 < acceptance <= 1:
        raise ValueError(f"acceptance must be in (0, 1], not {acceptance}")
    # less a hair, so that float noise (0.55 x 100 = 55.00000000000001) does not round up
    return min(pictures, max(1, math.ceil((pictures + 1) * acceptance - 1e-9)))


def threshold_for(calibration: np.ndarray, acceptance: float) -> float:
    """The outlier score that accepts `acceptance` of the in-domain calibration scores.

    A split-conformal quantile: of n scores, the ceil((n + 1) x acceptance)-th smallest. A new
    in-domain picture drawn like the calibration pictures then scores at or below it with
    probability at least `acceptance` (Angelopoulos and Bates, "A gentle introduction to
    conformal prediction", 2021); the interpolated quantile used before fell short of that by
    up to one score in n + 1. With too few scores for that rank (n < 49 at 98%, any n at
    1.0) it is the largest score, which accepts n / (n + 1). Pictures unlike the calibration
    ones (another camera, another season) can be accepted less.

    Example:
        >>> threshold_for(np.arange(1, 100), 0.9)  # 99 scores: the 90th smallest
        90.0
    """
    values = np.sort(np.asarray(calibration, dtype=np.float64))
    rank = _rank(len(values), acceptance)  # checks acceptance, even with no scores
    return float(values[rank - 1]) if len(values) else float("inf")


# A label's threshold where nothing better is known: no validation pictures, or none with it.
DEFAULT_THRESHOLD = 0.5
# The thresholds best_thresholds tries: a grid, not every probability seen, so that a threshold
# is not fitted to one validation picture's exact value.
CANDIDATES = np.round(np.arange(0.05, 0.96, 0.01), 2)


def f1_scores(probabilities: np.ndarray, targets: np.ndarray, thresholds: np.ndarray
              ) -> np.ndarray:
    """Each label's F1 when it is given at its threshold (0 for a label never present nor
    given)."""
    given = probabilities >= thresholds
    truth = targets > 0.5
    hits = (given & truth).sum(axis=0)
    denominator = given.sum(axis=0) + truth.sum(axis=0)
    return np.divide(2 * hits, denominator, out=np.zeros(len(hits)), where=denominator > 0)


def best_thresholds(probabilities: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each label, the threshold of CANDIDATES with the best F1 on these pictures; ties
    go to the one nearest 0.5, and a label absent from them keeps DEFAULT_THRESHOLD.

    Example:
        >>> best_thresholds(np.array([[0.3], [0.8], [0.1]]), np.array([[1], [1], [0]]))
        array([0.3])
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(targets)
    chosen = np.full(probabilities.shape[1], DEFAULT_THRESHOLD)
    if not len(probabilities):
        return chosen
    scores = np.stack([f1_scores(probabilities, targets, np.full(len(chosen), t))
                       for t in CANDIDATES])  # (candidates, labels)
    # the best F1, then the threshold nearest 0.5
    nearness = -np.abs(CANDIDATES - DEFAULT_THRESHOLD)
    for label in range(len(chosen)):
        if targets[:, label].sum() == 0:
            continue
        best = np.lexsort((nearness, scores[:, label]))[-1]
        chosen[label] = CANDIDATES[best]
    return chosen
