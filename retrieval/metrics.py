"""Pair and top-k metrics for the retrieval side: re-exported from :mod:`training.metrics` (their one home).

``retrieval`` may import ``training`` but ``dashboard`` may not, so upper layers import the metrics from here.
"""

from __future__ import annotations

from training.metrics import (
    SweepRow,
    accuracy_at,
    best_accuracy_threshold,
    bootstrap_accuracy_ci,
    candidate_thresholds,
    confusion,
    equal_error_rate,
    knn_accuracy,
    majority_vote,
    majority_vote_accuracy,
    precision_at_k,
    rates_at,
    roc_auc,
    sweep,
    youden_threshold,
)

__all__ = [
    "SweepRow",
    "accuracy_at",
    "best_accuracy_threshold",
    "bootstrap_accuracy_ci",
    "candidate_thresholds",
    "confusion",
    "equal_error_rate",
    "knn_accuracy",
    "majority_vote",
    "majority_vote_accuracy",
    "precision_at_k",
    "rates_at",
    "roc_auc",
    "sweep",
    "youden_threshold",
]
