"""The unknown answer's threshold, from the in-domain scores it is calibrated on.

numpy alone: a model loaded without torch (inference/graphs.py) can still move its threshold
to another acceptance. unknown.py fits the detector whose scores these are.
"""

from __future__ import annotations

import numpy as np

# A quantile of the validation pictures' scores rests on the few of them above it: with fewer
# than this many there (fewer than 250 validation pictures at 98% acceptance, 100 at 95%), the
# training pictures' scores, each with itself left out of the bank, are added to them.
# bench/trust.py, 20 seeds at 98%: hymenoptera's 153 validation pictures alone (3 above the
# threshold) let 7% of far strangers through on one seed; with the training pictures' 220
# scores added, none on any seed, and 98.0% of held-out training pictures still accepted
# (98.8% before). Blood-cells (480 validation pictures) keeps its validation scores alone:
# there the training pictures, which the head fits closely, score lower and would tighten the
# threshold to about 95% acceptance.
MIN_BEYOND = 5


def too_few_beyond(pictures: int, acceptance: float) -> bool:
    """Whether fewer than MIN_BEYOND of `pictures` calibration scores would lie above the
    threshold accepting `acceptance` of them (then more scores are needed to place it)."""
    return pictures * (1 - acceptance) < MIN_BEYOND - 1e-9


def threshold_for(calibration: np.ndarray, acceptance: float) -> float:
    """The outlier score that accepts `acceptance` of the in-domain calibration scores."""
    if not 0 < acceptance <= 1:
        raise ValueError(f"acceptance must be in (0, 1], not {acceptance}")
    values = np.asarray(calibration, dtype=np.float64)
    return float(np.quantile(values, acceptance)) if len(values) else float("inf")
