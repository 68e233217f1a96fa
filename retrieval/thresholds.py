"""Decision thresholds in both conventions: cosine similarity and the study's distance d = 2 - 2·cos.

For L2-normalised vectors d equals the squared Euclidean distance, in [0, 4]. Two images are called the *same*
category when ``cos >= threshold_cos`` (equivalently ``d <= threshold_d``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from retrieval.errors import ThresholdError

#: The study's threshold: same category when d < 0.705 (cos > 0.6475). Used only when nothing is calibrated.
STUDY_THRESHOLD_D = 0.705

ThresholdSource = Literal["user", "calibrated", "study-default"]


def cos_to_d(cos: float | np.ndarray) -> float | np.ndarray:
    """Cosine similarity -> distance d = 2 - 2·cos."""
    return 2.0 - 2.0 * cos


def d_to_cos(d: float | np.ndarray) -> float | np.ndarray:
    """Distance d -> cosine similarity 1 - d/2."""
    return 1.0 - d / 2.0


def check_cos(value: float) -> float:
    """Validate a cosine threshold (must be a finite number in [-1, 1])."""
    if not isinstance(value, int | float) or not math.isfinite(value) or not -1.0 <= value <= 1.0:
        raise ThresholdError(
            f"cosine threshold {value!r} is out of range: use a value in [-1, 1] "
            "(or pass the distance convention d = 2 - 2cos in [0, 4] with threshold_d / --threshold-d)"
        )
    return float(value)


def check_d(value: float) -> float:
    """Validate a distance threshold (must be a finite number in [0, 4])."""
    if not isinstance(value, int | float) or not math.isfinite(value) or not 0.0 <= value <= 4.0:
        raise ThresholdError(
            f"distance threshold d={value!r} is out of range: d = 2 - 2cos lies in [0, 4] (the study used 0.705); "
            "for a cosine threshold in [-1, 1] use threshold / --threshold"
        )
    return float(value)


@dataclass(frozen=True)
class Threshold:
    """A decision threshold and where it came from."""

    cos: float
    source: ThresholdSource

    @property
    def d(self) -> float:
        return float(cos_to_d(self.cos))


def resolve_threshold(
    threshold: float | None = None, threshold_d: float | None = None, calibrated_cos: float | None = None
) -> Threshold:
    """Choose the threshold: a user value (either convention) wins over the calibrated one, then the study's.

    Raises:
        ThresholdError: Both conventions given at once, or a value out of range.
    """
    if threshold is not None and threshold_d is not None:
        raise ThresholdError("give the threshold in one convention only: cosine (threshold) or distance (threshold_d)")
    if threshold is not None:
        return Threshold(check_cos(threshold), "user")
    if threshold_d is not None:
        return Threshold(float(d_to_cos(check_d(threshold_d))), "user")
    if calibrated_cos is not None:
        return Threshold(check_cos(calibrated_cos), "calibrated")
    return Threshold(float(d_to_cos(STUDY_THRESHOLD_D)), "study-default")
