"""Labeled probe run after each epoch: held-out pair accuracy, ROC AUC, kNN accuracy.

The decision threshold is chosen on one half of the probe (calibration) and the accuracy is reported on the other
half (held out), never on the pairs it was tuned on. A labeled folder is split by image (each class halved, seeded);
a pairs CSV is split by pair (alternate rows). Metrics come from :mod:`training.metrics` (their one home).

Sources: a labeled folder (one sub-folder per class; files at its root have no class and are left out) or a pairs
CSV with columns ``path_a,path_b,same`` (paths relative to the CSV's folder, ``same`` in 0/1/true/false).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training import metrics as M
from training.data import list_images, load_uint8
from training.errors import DataError
from training.metrics import knn_accuracy, roc_auc

__all__ = [
    "EmbedFn",
    "Probe",
    "balanced_pairs",
    "best_threshold",
    "image_disjoint_pairs",
    "knn_accuracy",
    "roc_auc",
    "split_pairs",
]

logger = logging.getLogger(__name__)

#: Embeds a ``(B, 3, S, S)`` uint8 batch into ``(B, D)`` L2-normalised float32 vectors.
EmbedFn = Callable[[np.ndarray], np.ndarray]


def best_threshold(similarity: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Threshold on cosine similarity maximising accuracy of ``same = sim >= t`` on these pairs
    (:func:`training.metrics.best_accuracy_threshold`), and that accuracy.

    The accuracy is in-sample (tuned on the same pairs): report accuracy on other pairs at this threshold.

    Returns:
        ``(accuracy_on_these_pairs, threshold)``.
    """
    thr = M.best_accuracy_threshold(similarity, same)
    return M.accuracy_at(similarity, same, thr), thr


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


Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]


def split_pairs(pairs: Pairs) -> tuple[Pairs, Pairs]:
    """Two disjoint halves of a pair list, each with half the 'same' and half the 'different' pairs (alternate rows
    within each kind): calibrate on the first, score on the second."""
    a, b, same = pairs
    same = np.asarray(same, dtype=bool)
    rank = np.empty(len(same), dtype=np.int64)
    for kind in (True, False):
        idx = np.flatnonzero(same == kind)
        rank[idx] = np.arange(len(idx))
    first = rank % 2 == 0
    return (a[first], b[first], same[first]), (a[~first], b[~first], same[~first])


def image_disjoint_pairs(labels: np.ndarray, n_pairs: int, seed: int) -> tuple[Pairs, Pairs]:
    """Split the images in two halves (per class, seeded) and draw balanced pairs within each half.

    Returns:
        ``(calibration_pairs, held_out_pairs)``; no image is in both. Falls back to :func:`split_pairs` of one
        pair list (pair-disjoint, images shared) when a half has too few images for same-class pairs.
    """
    rng = np.random.default_rng(seed)
    half = np.zeros(len(labels), dtype=bool)
    for lab in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == lab))
        half[idx[1::2]] = True
    sides = [np.flatnonzero(~half), np.flatnonzero(half)]
    try:
        out = []
        for k, side in enumerate(sides):
            a, b, same = balanced_pairs(labels[side], max(2, n_pairs // 2), seed + k)
            out.append((side[a], side[b], same))
        return out[0], out[1]
    except DataError:
        logger.warning("labeled probe too small to split its images in two: calibrating and scoring on disjoint "
                       "halves of one pair list instead (images shared)")  # fmt: skip
        return split_pairs(balanced_pairs(labels, n_pairs, seed))


@dataclass
class Probe:
    """Preloaded probe images (uint8 at the trained size) and how to score an embedding of them."""

    images: np.ndarray  # (N, 3, S, S) uint8
    labels: np.ndarray | None  # (N,) class names (folder probe)
    pairs: Pairs  # held-out pairs (index_a, index_b, same): accuracy and AUC are reported on these
    knn_k: int = 5
    calibration_pairs: Pairs | None = None  # the threshold is chosen on these; None = first half of ``pairs``

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
        all_files = list_images(p)
        files = [f for f in all_files if len(f.relative_to(p).parts) > 1]
        if len(files) < len(all_files):
            logger.warning(
                "labeled probe %s: %d file(s) at the folder's root have no class sub-folder and are left out",
                p,
                len(all_files) - len(files),
            )
        names = np.array([f.relative_to(p).parts[0] for f in files])
        if len(set(names)) < 2:
            raise DataError(f"labeled folder {p} needs at least 2 class sub-folders with images")
        images, kept = load_uint8(files, image_size)
        labels = names[kept]
        calibration, held_out = image_disjoint_pairs(labels, n_pairs, seed)
        return cls(images, labels, held_out, knn_k, calibration)

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
        if len(good) < 4:
            raise DataError(
                f"pairs CSV {path} has {len(good)} usable pair(s): need at least 4 (half to choose the threshold, "
                "half to score it on)"
            )
        a = np.array([pos[r[0]] for r in good])
        b = np.array([pos[r[1]] for r in good])
        calibration, held_out = split_pairs((a, b, np.array([r[2] for r in good])))
        return cls(images, None, held_out, knn_k, calibration)

    def evaluate(self, embed: EmbedFn, batch_size: int = 128) -> dict[str, float]:
        """Embed the probe images and score them: threshold from the calibration pairs, metrics on the held-out ones.

        Returns:
            ``probe_pair_acc`` (held-out pairs, at the threshold chosen on the calibration pairs), ``probe_auc``
            (held-out pairs; NaN when they hold one class only), ``probe_threshold_cos``, ``probe_threshold_d``
            (= 2 - 2 cos), ``probe_pairs_calibration``, ``probe_pairs_held_out`` and, for a folder probe,
            ``probe_knn_acc`` (leave-one-out over all probe images).
        """
        emb = np.concatenate([embed(self.images[i : i + batch_size]) for i in range(0, len(self.images), batch_size)])
        calibration, held_out = (
            (self.calibration_pairs, self.pairs) if self.calibration_pairs is not None else split_pairs(self.pairs)
        )

        def sims(pairs: Pairs) -> np.ndarray:
            return np.sum(emb[pairs[0]] * emb[pairs[1]], axis=1)

        _, thr = best_threshold(sims(calibration), calibration[2])
        s_out, y_out = sims(held_out), held_out[2].astype(bool)
        out = {
            "probe_pair_acc": M.accuracy_at(s_out, y_out, thr),
            "probe_auc": roc_auc(s_out, y_out) if y_out.any() and not y_out.all() else float("nan"),
            "probe_threshold_cos": thr,
            "probe_threshold_d": 2.0 - 2.0 * thr,
            "probe_pairs_calibration": float(len(calibration[2])),
            "probe_pairs_held_out": float(len(y_out)),
        }
        if self.labels is not None:
            out["probe_knn_acc"] = knn_accuracy(emb, self.labels, self.knn_k)
        return out
