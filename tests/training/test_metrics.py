"""Pair and top-k metrics (training.metrics, re-exported by retrieval.metrics) against hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training import metrics as M
from training.errors import MetricsError

# positives (same) at 0.9, 0.8, 0.6; negatives at 0.7, 0.5, 0.4
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
LABELS = np.array([1, 1, 0, 1, 0, 0])


def test_auc_by_hand() -> None:
    # 9 (pos, neg) pairs, the positive scores higher in 8 of them (0.6 < 0.7)
    assert M.roc_auc(SCORES, LABELS) == pytest.approx(8 / 9)
    # ties count one half: one pos and one neg at the same score
    assert M.roc_auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)


def test_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    s = np.round(rng.normal(size=300), 1)
    y = rng.integers(0, 2, size=300)
    assert M.roc_auc(s, y) == pytest.approx(roc_auc_score(y, s))


def test_accuracy_thresholds_by_hand() -> None:
    assert M.accuracy_at(SCORES, LABELS, 0.75) == pytest.approx(5 / 6)
    assert M.accuracy_at(SCORES, LABELS, 0.65) == pytest.approx(4 / 6)
    assert M.accuracy_at(SCORES, LABELS, 0.95) == pytest.approx(3 / 6)
    # 5/6 is reached between 0.7 and 0.8 and between 0.5 and 0.6: ties pick the median candidate
    assert M.best_accuracy_threshold(SCORES, LABELS) in (pytest.approx(0.75), pytest.approx(0.55))
    # Youden J = 2/3 at both 0.75 (TPR 2/3, FPR 0) and 0.55 (TPR 1, FPR 1/3)
    assert M.youden_threshold(SCORES, LABELS) in (pytest.approx(0.75), pytest.approx(0.55))
    assert M.rates_at(SCORES, LABELS, 0.55) == (pytest.approx(1.0), pytest.approx(1 / 3))


def test_eer_by_hand() -> None:
    # at t=0.65: FNR = 1/3 (0.6 missed), FPR = 1/3 (0.7 accepted) -> EER 1/3 exactly
    eer, thr = M.equal_error_rate(SCORES, LABELS)
    assert eer == pytest.approx(1 / 3) and thr == pytest.approx(0.65)
    # perfectly separated: EER 0
    assert M.equal_error_rate([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0])[0] == pytest.approx(0.0)
    # interpolated case: pos {0.8, 0.4}, neg {0.6, 0.2}: FNR/FPR cross at 1/2
    assert M.equal_error_rate([0.8, 0.4, 0.6, 0.2], [1, 1, 0, 0])[0] == pytest.approx(0.5)


def test_sweep_table_rows() -> None:
    rows = M.sweep(SCORES, LABELS, thresholds_d=[0.5, 0.9])
    assert rows[0].threshold_cos == pytest.approx(0.75) and rows[0].threshold_d == 0.5
    assert (rows[0].accuracy, rows[0].tpr, rows[0].fpr) == (pytest.approx(5 / 6), pytest.approx(2 / 3), 0.0)
    assert rows[1].threshold_cos == pytest.approx(0.55)
    assert (rows[1].tpr, rows[1].fpr) == (pytest.approx(1.0), pytest.approx(1 / 3))
    assert len(M.sweep(SCORES, LABELS)) == 15  # default d grid 0.1 .. 1.5


def test_bootstrap_ci() -> None:
    assert M.bootstrap_accuracy_ci([0.9, 0.1], [1, 0], 0.5) == (1.0, 1.0)
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    s = y * 0.3 + rng.normal(0, 0.3, 400)
    acc = M.accuracy_at(s, y, 0.15)
    lo, hi = M.bootstrap_accuracy_ci(s, y, 0.15, n_boot=500, seed=3)
    assert lo < acc < hi and hi - lo < 0.15
    assert (lo, hi) == M.bootstrap_accuracy_ci(s, y, 0.15, n_boot=500, seed=3)


def test_topk_label_metrics_by_hand() -> None:
    nl = [["a", "a", "b"], ["b", "a", "a"]]
    assert M.precision_at_k(nl, ["a", "b"], 1) == 1.0
    assert M.precision_at_k(nl, ["a", "b"], 3) == pytest.approx(0.5)
    assert M.majority_vote_accuracy(nl, ["a", "b"], 3) == 0.5
    assert M.majority_vote(["b", "a"]) == "b"  # tie: the higher-ranked label
    assert M.precision_at_k([["a"]], ["a"], 2) == 0.5  # missing neighbours count as wrong


def test_metric_input_errors() -> None:
    with pytest.raises(MetricsError, match="both kinds"):
        M.roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(MetricsError, match="NaN"):
        M.accuracy_at([float("nan")], [1], 0.5)
    with pytest.raises(MetricsError, match="2 scores but 1 labels"):
        M.accuracy_at([0.1, 0.2], [1], 0.5)


def test_knn_accuracy_leave_one_out_and_ties_to_nearest() -> None:
    emb = np.array([[1, 0], [0.99, 0.14], [0, 1], [0.14, 0.99]], dtype=np.float32)
    assert M.knn_accuracy(emb, ["a", "a", "b", "b"], k=1) == 1.0
    # k=2 for item 0: neighbours 1 (a) then 3 (b): a tie goes to the nearest, "a"
    assert M.knn_accuracy(emb, ["a", "a", "b", "b"], k=2) == 1.0


def test_retrieval_metrics_is_the_same_implementation() -> None:
    from retrieval import metrics as RM

    assert RM.best_accuracy_threshold is M.best_accuracy_threshold and RM.roc_auc is M.roc_auc
