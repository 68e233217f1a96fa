"""Labeled probe run after each epoch: pair accuracy at the best threshold (balanced pairs), ROC AUC, kNN accuracy.

Sources: a labeled folder (one sub-folder per class) or a pairs CSV with columns ``path_a,path_b,same``
(paths relative to the CSV's folder, ``same`` in 0/1/true/false).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data import list_images, load_uint8
from training.errors import DataError

logger = logging.getLogger(__name__)

#: Embeds a ``(B, 3, S, S)`` uint8 batch into ``(B, D)`` L2-normalised float32 vectors.
EmbedFn = Callable[[np.ndarray], np.ndarray]


def best_threshold(similarity: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Threshold on cosine similarity maximising accuracy of ``same = sim >= t``.

    Returns:
        ``(accuracy, threshold)``.
    """
    order = np.argsort(-similarity, kind="stable")
    s, y = similarity[order], same[order].astype(np.int64)
    n, pos = len(y), int(y.sum())
    # predicting the first i (highest similarity) as "same": correct = TP(i) + TN(i)
    tp = np.concatenate([[0], np.cumsum(y)])
    fp = np.arange(n + 1) - tp
    correct = tp + (n - pos - fp)
    best = int(np.argmax(correct))
    if best == 0:
        thr = float(s[0]) + 1e-6
    elif best == n:
        thr = float(s[-1])
    else:
        thr = float((s[best - 1] + s[best]) / 2)
    return float(correct[best] / n), thr


def roc_auc(similarity: np.ndarray, same: np.ndarray) -> float:
    """ROC AUC of the similarity as a score for ``same`` (rank formula, ties averaged)."""
    from scipy.stats import rankdata

    y = same.astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(similarity)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def balanced_pairs(labels: np.ndarray, n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n_pairs`` index pairs, half same-label, half different-label (distinct images), reproducible by seed."""
    rng = np.random.default_rng(seed)
    by_label = {lab: np.flatnonzero(labels == lab) for lab in np.unique(labels)}
    multi = [lab for lab, idx in by_label.items() if len(idx) >= 2]
    if not multi or len(by_label) < 2:
        raise DataError("the probe needs at least 2 classes and a class with 2 images")
    a, b, same = [], [], []
    for i in range(n_pairs):
        if i % 2 == 0:
            lab = multi[rng.integers(len(multi))]
            x, y = rng.choice(by_label[lab], size=2, replace=False)
            same.append(True)
        else:
            la, lb = rng.choice(list(by_label), size=2, replace=False)
            x, y = rng.choice(by_label[la]), rng.choice(by_label[lb])
            same.append(False)
        a.append(x)
        b.append(y)
    return np.array(a), np.array(b), np.array(same)


def knn_accuracy(emb: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Leave-one-out kNN accuracy with cosine similarity (majority vote, ties to the nearest)."""
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    k = max(1, min(k, len(labels) - 1))
    nn_idx = np.argsort(-sims, axis=1)[:, :k]
    correct = 0
    for i, row in enumerate(nn_idx):
        votes: dict[object, int] = {}
        for j in row:
            votes[labels[j]] = votes.get(labels[j], 0) + 1
        top = max(votes.values())
        winner = next(labels[j] for j in row if votes[labels[j]] == top)
        correct += int(winner == labels[i])
    return correct / len(labels)


@dataclass
class Probe:
    """Preloaded probe images (uint8 at the trained size) and how to score an embedding of them."""

    images: np.ndarray  # (N, 3, S, S) uint8
    labels: np.ndarray | None  # (N,) class names (folder probe)
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray]  # (index_a, index_b, same)
    knn_k: int = 5

    @classmethod
    def from_path(cls, path: str | Path, image_size: int, n_pairs: int = 1000, knn_k: int = 5, seed: int = 0) -> Probe:
        """Build from a labeled folder or a pairs CSV.

        Raises:
            DataError: missing path, fewer than 2 classes, unreadable CSV.
        """
        p = Path(path)
        if p.is_file() and p.suffix.lower() == ".csv":
            return cls._from_csv(p, image_size, knn_k)
        if not p.is_dir():
            raise DataError(f"labeled probe {p} is neither a folder of class sub-folders nor a pairs .csv")
        files = list_images(p)
        names = np.array([f.relative_to(p).parts[0] if len(f.relative_to(p).parts) > 1 else "" for f in files])
        if len(set(names) - {""}) < 2:
            raise DataError(f"labeled folder {p} needs at least 2 class sub-folders with images")
        images, kept = load_uint8(files, image_size)
        labels = names[kept]
        return cls(images, labels, balanced_pairs(labels, n_pairs, seed), knn_k)

    @classmethod
    def _from_csv(cls, path: Path, image_size: int, knn_k: int) -> Probe:
        rows: list[tuple[Path, Path, bool]] = []
        try:
            with path.open(newline="") as fh:
                for lineno, row in enumerate(csv.DictReader(fh), start=2):
                    try:
                        same = str(row["same"]).strip().lower() in ("1", "true", "yes", "same")
                        rows.append((path.parent / row["path_a"], path.parent / row["path_b"], same))
                    except (KeyError, TypeError) as exc:
                        raise DataError(f"{path}:{lineno}: needs columns path_a,path_b,same") from exc
        except OSError as exc:
            raise DataError(f"cannot read pairs CSV {path}: {exc}") from exc
        if not rows:
            raise DataError(f"pairs CSV {path} has no rows")
        unique = sorted({p for r in rows for p in r[:2]})
        images, kept = load_uint8(unique, image_size)
        pos = {unique[i]: j for j, i in enumerate(kept)}
        good = [r for r in rows if r[0] in pos and r[1] in pos]
        if not good:
            raise DataError(f"no pair of {path} has two readable images")
        a = np.array([pos[r[0]] for r in good])
        b = np.array([pos[r[1]] for r in good])
        return cls(images, None, (a, b, np.array([r[2] for r in good])), knn_k)

    def evaluate(self, embed: EmbedFn, batch_size: int = 128) -> dict[str, float]:
        """Embed the probe images and score them.

        Returns:
            ``probe_pair_acc``, ``probe_auc``, ``probe_threshold_cos``, ``probe_threshold_d`` (= 2 - 2 cos) and,
            for a folder probe, ``probe_knn_acc``.
        """
        emb = np.concatenate([embed(self.images[i : i + batch_size]) for i in range(0, len(self.images), batch_size)])
        a, b, same = self.pairs
        sims = np.sum(emb[a] * emb[b], axis=1)
        acc, thr = best_threshold(sims, same)
        out = {
            "probe_pair_acc": acc,
            "probe_auc": roc_auc(sims, same),
            "probe_threshold_cos": thr,
            "probe_threshold_d": 2.0 - 2.0 * thr,
        }
        if self.labels is not None:
            out["probe_knn_acc"] = knn_accuracy(emb, self.labels, self.knn_k)
        return out
