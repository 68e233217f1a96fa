"""Collapse monitor: per-dimension std of L2-normalised representations, relative to ``1/sqrt(d)``.

For vectors spread uniformly on the unit sphere each dimension has std ``~1/sqrt(d)``; a collapsed encoder
(every image mapped to the same vector) gives 0. The score is ``mean_std * sqrt(d)``: ~1 healthy, 0 collapsed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def collapse_score(z: torch.Tensor) -> float:
    """``mean over dims of std(normalize(z)) * sqrt(d)`` for a ``(N, d)`` batch (``N >= 2``); 0 means collapsed."""
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"collapse_score needs a (N>=2, d) batch, got {tuple(z.shape)}")
    return float(_score_tensor(z).item())


def _score_tensor(z: torch.Tensor) -> torch.Tensor:
    """The score as a 0-d tensor on ``z``'s device (no host sync)."""
    zn = F.normalize(z.detach().float(), dim=1)
    return zn.std(dim=0).mean() * math.sqrt(z.shape[1])


@dataclass
class CollapseReport:
    """One epoch's verdict."""

    score: float
    collapsed: bool


class CollapseMonitor:
    """Averages :func:`collapse_score` over an epoch's batches and warns when it falls below ``warn_below``.

    Args:
        warn_below: threshold on the score (default 0.1 = one tenth of the healthy spread).
        name: what is monitored, for the log message.
    """

    def __init__(self, warn_below: float = 0.1, name: str = "projection") -> None:
        self.warn_below = warn_below
        self.name = name
        self._total: torch.Tensor | float = 0.0
        self._count = 0

    def update(self, z: torch.Tensor) -> None:
        """Add one batch of representations ``(N, d)`` (stays on the device: no synchronisation per step)."""
        if z.shape[0] >= 2:
            self._total = self._total + _score_tensor(z)
            self._count += 1

    def report(self, epoch: int | None = None) -> CollapseReport:
        """The epoch's mean score (warning logged when collapsed); resets the accumulator."""
        score = float(self._total) / self._count if self._count else float("nan")
        collapsed = self._count > 0 and score < self.warn_below
        if collapsed:
            logger.warning(
                "possible collapse%s: %s spread %.3f < %.3f (std of normalised vectors x sqrt(d)); "
                "try a lower learning rate, a larger batch or a slower EMA",
                f" at epoch {epoch}" if epoch is not None else "",
                self.name,
                score,
                self.warn_below,
            )
        self._total, self._count = 0.0, 0
        return CollapseReport(score=score, collapsed=collapsed)
