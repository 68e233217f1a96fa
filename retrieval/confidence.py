"""How far to trust one pair decision: where its score falls among labeled same / different pairs.

A binary "same category" at a threshold hides how close the call was. :func:`local_confidence` looks at the labeled
pairs that scored closest to this pair and reports the share of them that are same-category pairs, with a 95%
Wilson interval and the number of pairs it rests on, so a page can say "of the 40 calibration pairs scoring
closest to this one (cos 0.61-0.70), 33 (82%, 95% CI 68-91%) are the same category".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: How many of the nearest labeled pairs (by score) the local estimate uses.
NEIGHBOURS = 40


@dataclass(frozen=True)
class LocalConfidence:
    """The labeled pairs that scored closest to a pair, and how many of them are same-category pairs.

    Attributes:
        n: pairs the estimate rests on (the nearest ``NEIGHBOURS``, or all when fewer).
        n_same: of those, same-category pairs.
        low: lowest cosine among them.
        high: highest cosine among them.
        ci95: 95% Wilson interval of the same-category share.
        n_total: all labeled pairs available.
    """

    n: int
    n_same: int
    low: float
    high: float
    ci95: tuple[float, float]
    n_total: int

    @property
    def same_share(self) -> float:
        return self.n_same / self.n if self.n else float("nan")


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (``(nan, nan)`` for n = 0)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def local_confidence(
    cos: float, scores: np.ndarray, labels: np.ndarray, *, neighbours: int = NEIGHBOURS
) -> LocalConfidence | None:
    """Share of same-category pairs among the labeled pairs whose cosine is nearest to ``cos``.

    Args:
        cos: this pair's cosine.
        scores: (N,) cosines of labeled pairs.
        labels: (N,) 1 for same-category pairs, 0 for different.
        neighbours: how many nearest pairs to use.

    Returns:
        The estimate, or None when there are no labeled pairs.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if scores.size == 0:
        return None
    k = min(int(neighbours), int(scores.size))
    nearest = np.argsort(np.abs(scores - float(cos)), kind="stable")[:k]
    n_same = int(labels[nearest].sum())
    return LocalConfidence(
        n=k,
        n_same=n_same,
        low=float(scores[nearest].min()),
        high=float(scores[nearest].max()),
        ci95=wilson(n_same, k),
        n_total=int(scores.size),
    )
