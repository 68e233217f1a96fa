"""Pair and top-k metrics on plain arrays (no database): sweep, ROC AUC, EER, thresholds, bootstrap, precision@k,
kNN accuracy.

The one implementation of these metrics: the training probe uses it directly, ``retrieval.metrics`` re-exports it
for the retrieval side (evaluation, dashboard), so a threshold or an AUC means the same thing everywhere.

Convention: ``scores`` are cosine similarities, ``labels`` are 1 for "same category"; a pair is predicted *same*
when ``score >= threshold``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from training.errors import MetricsError


def _check(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise MetricsError(f"{len(s)} scores but {len(y)} labels")
    if len(s) == 0:
        raise MetricsError("no pairs to evaluate")
    if not np.isfinite(s).all():
        raise MetricsError("scores contain NaN: drop the pairs that could not be answered first")
    return s, y


@dataclass(frozen=True)
class SweepRow:
    """One row of the threshold table (as in the study): threshold in both conventions, accuracy, TPR, FPR."""

    threshold_cos: float
    threshold_d: float
    accuracy: float
    tpr: float
    fpr: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def confusion(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    """(tp, fp, tn, fn) at ``threshold``."""
    s, y = _check(scores, labels)
    pred = s >= threshold
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    return tp, fp, int(np.sum(~pred & ~y)), int(np.sum(~pred & y))


def accuracy_at(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray, threshold: float) -> float:
    """Fraction of pairs decided correctly at ``threshold``."""
    s, y = _check(scores, labels)
    return float(np.mean((s >= threshold) == y))


def rates_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """(TPR, FPR) at ``threshold`` (NaN when a class is absent)."""
    tp, fp, tn, fn = confusion(scores, labels, threshold)
    tpr = tp / (tp + fn) if tp + fn else float("nan")
    fpr = fp / (fp + tn) if fp + tn else float("nan")
    return tpr, fpr


def sweep(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    thresholds_d: Sequence[float] | None = None,
) -> list[SweepRow]:
    """Accuracy / TPR / FPR over thresholds given in the distance convention (default d = 0.1, 0.2, ... 1.5)."""
    s, y = _check(scores, labels)
    grid = np.round(np.arange(0.1, 1.55, 0.1), 4) if thresholds_d is None else np.asarray(thresholds_d, dtype=float)
    rows = []
    for d in grid:
        t = 1.0 - float(d) / 2.0
        tpr, fpr = rates_at(s, y, t)
        rows.append(SweepRow(t, float(d), accuracy_at(s, y, t), tpr, fpr))
    return rows


def candidate_thresholds(scores: np.ndarray) -> np.ndarray:
    """Midpoints between consecutive distinct scores, plus one above the max and one below the min."""
    u = np.unique(scores)
    mids = (u[:-1] + u[1:]) / 2.0
    return np.concatenate([[u[0] - 1e-6], mids, [u[-1] + 1e-6]])


def _curves(s: np.ndarray, y: np.ndarray, cands: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(accuracy, tpr, fpr) at each candidate threshold, vectorised with sorting (O(N log N))."""
    order = np.sort(s)
    pos = np.sort(s[y])
    neg = np.sort(s[~y])
    n_pos, n_neg = len(pos), len(neg)
    tp = n_pos - np.searchsorted(pos, cands, side="left")
    fp = n_neg - np.searchsorted(neg, cands, side="left")
    tn = n_neg - fp
    acc = (tp + tn) / len(order)
    tpr = tp / n_pos if n_pos else np.full(len(cands), np.nan)
    fpr = fp / n_neg if n_neg else np.full(len(cands), np.nan)
    return acc, tpr, fpr


def best_accuracy_threshold(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Threshold with the highest accuracy (midpoint between scores; ties: the median of the tied candidates)."""
    s, y = _check(scores, labels)
    cands = candidate_thresholds(s)
    acc, _, _ = _curves(s, y, cands)
    best = np.flatnonzero(acc == acc.max())
    return float(cands[best[len(best) // 2]])


def youden_threshold(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Threshold maximising Youden's J = TPR - FPR (needs both classes)."""
    s, y = _check(scores, labels)
    _need_both(y)
    cands = candidate_thresholds(s)
    _, tpr, fpr = _curves(s, y, cands)
    j = tpr - fpr
    best = np.flatnonzero(j == j.max())
    return float(cands[best[len(best) // 2]])


def roc_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """ROC AUC = P(score of a same pair > score of a different pair), ties counting 1/2 (Mann-Whitney)."""
    s, y = _check(scores, labels)
    _need_both(y)
    from scipy.stats import rankdata

    ranks = rankdata(s)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def equal_error_rate(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> tuple[float, float]:
    """Equal error rate and its threshold: where FPR = FNR on the ROC, linearly interpolated.

    Returns:
        (eer, threshold_cos).
    """
    s, y = _check(scores, labels)
    _need_both(y)
    cands = candidate_thresholds(s)[::-1]  # high threshold -> low: FPR rises, FNR falls
    _, tpr, fpr = _curves(s, y, cands)
    fnr = 1.0 - tpr
    diff = fnr - fpr  # starts at 1 (nothing predicted same), ends at -1
    idx = int(np.flatnonzero(diff <= 0)[0])
    if idx == 0 or diff[idx] == 0:
        return float(fpr[idx]), float(cands[idx])
    w = diff[idx - 1] / (diff[idx - 1] - diff[idx])
    eer = fpr[idx - 1] + w * (fpr[idx] - fpr[idx - 1])
    thr = cands[idx - 1] + w * (cands[idx] - cands[idx - 1])
    return float(eer), float(thr)


def bootstrap_accuracy_ci(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    threshold: float,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) confidence interval of the accuracy at a fixed threshold."""
    s, y = _check(scores, labels)
    correct = ((s >= threshold) == y).astype(np.float64)
    rng = np.random.default_rng(seed)
    n = len(correct)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = correct[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def precision_at_k(neighbour_labels: Sequence[Sequence[Any]], query_labels: Sequence[Any], k: int) -> float:
    """Mean fraction of the first ``k`` neighbours that share the query's label (missing neighbours count as wrong)."""
    if len(neighbour_labels) != len(query_labels) or not query_labels:
        raise MetricsError("precision@k needs one neighbour list per query and at least one query")
    vals = [sum(1 for lab in nl[:k] if lab == q) / k for nl, q in zip(neighbour_labels, query_labels, strict=True)]
    return float(np.mean(vals))


def majority_vote(labels: Sequence[Any]) -> Any:
    """Most frequent label; ties go to the label that appears first (highest ranked)."""
    if not labels:
        return None
    counts = Counter(labels)
    top = max(counts.values())
    return next(lab for lab in labels if counts[lab] == top)


def majority_vote_accuracy(neighbour_labels: Sequence[Sequence[Any]], query_labels: Sequence[Any], k: int = 5) -> float:
    """Accuracy of predicting each query's label by majority vote of its first ``k`` neighbours."""
    if len(neighbour_labels) != len(query_labels) or not query_labels:
        raise MetricsError("majority vote needs one neighbour list per query and at least one query")
    hits = [majority_vote(list(nl[:k])) == q for nl, q in zip(neighbour_labels, query_labels, strict=True)]
    return float(np.mean(hits))


def knn_accuracy(emb: np.ndarray, labels: Sequence[Any] | np.ndarray, k: int) -> float:
    """Leave-one-out kNN accuracy with cosine similarity: each item's label predicted by :func:`majority_vote` of
    its ``k`` nearest other items.

    Args:
        emb: (N, D) L2-normalised vectors.
        labels: (N,) labels.
        k: neighbours (clipped to 1..N-1).
    """
    labs = list(labels)
    if len(labs) != len(emb) or len(labs) < 2:
        raise MetricsError(f"kNN accuracy needs one label per vector and at least 2 items (got {len(labs)})")
    sims = np.asarray(emb, dtype=np.float64) @ np.asarray(emb, dtype=np.float64).T
    np.fill_diagonal(sims, -np.inf)
    kk = max(1, min(int(k), len(labs) - 1))
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :kk]
    return majority_vote_accuracy([[labs[j] for j in row] for row in idx], labs, kk)


def _need_both(y: np.ndarray) -> None:
    if y.all() or not y.any():
        raise MetricsError("the pairs are all 'same' or all 'different': AUC, EER and Youden need both kinds of pairs")
