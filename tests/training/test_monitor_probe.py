"""Collapse monitor and the labeled probe metrics."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from training.errors import DataError
from training.monitor import CollapseMonitor, collapse_score
from training.probe import Probe, balanced_pairs, best_threshold, knn_accuracy, roc_auc


class ConstantEncoder(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones(x.shape[0], 64) + 0 * x.mean()


def test_collapse_monitor_flags_constant_encoder(caplog: pytest.LogCaptureFixture) -> None:
    monitor = CollapseMonitor(warn_below=0.1)
    x = torch.randn(16, 3, 8, 8)
    monitor.update(ConstantEncoder()(x))
    caplog.set_level(logging.WARNING)
    report = monitor.report(epoch=3)
    assert report.collapsed and report.score == pytest.approx(0.0, abs=1e-6)
    assert "possible collapse at epoch 3" in caplog.text


def test_collapse_score_healthy_for_spread_vectors() -> None:
    z = torch.randn(4096, 64, generator=torch.Generator().manual_seed(0))
    assert collapse_score(z) == pytest.approx(1.0, abs=0.05)
    monitor = CollapseMonitor(warn_below=0.1)
    monitor.update(z)
    assert not monitor.report().collapsed


def test_best_threshold_and_auc_by_hand() -> None:
    sims = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.75])
    same = np.array([1, 1, 0, 0, 0, 1], dtype=bool)
    acc, thr = best_threshold(sims, same)
    assert acc == 1.0 and 0.7 < thr <= 0.75
    assert roc_auc(sims, same) == pytest.approx(1.0)
    assert roc_auc(-sims, same) == pytest.approx(0.0)


def test_knn_and_balanced_pairs() -> None:
    emb = np.array([[1, 0], [0.99, 0.14], [0, 1], [0.14, 0.99]], dtype=np.float32)
    labels = np.array(["a", "a", "b", "b"])
    assert knn_accuracy(emb, labels, k=1) == 1.0
    a, b, same = balanced_pairs(labels, 20, seed=0)
    assert same.sum() == 10 and np.all((labels[a] == labels[b]) == same) and np.all(a != b)


def test_probe_from_folder_and_csv(sample_dir: Path, tmp_path: Path) -> None:
    probe = Probe.from_path(sample_dir, image_size=16, n_pairs=40)
    assert probe.images.shape == (64, 3, 16, 16) and len(set(probe.labels)) == 8  # type: ignore[arg-type]
    # a perfect embedder (one-hot of the class) scores 1
    classes = sorted(set(probe.labels))  # type: ignore[arg-type]
    onehot = np.eye(len(classes), dtype=np.float32)[[classes.index(lab) for lab in probe.labels]]  # type: ignore[union-attr]
    calls = iter([onehot])
    metrics = Probe(probe.images, probe.labels, probe.pairs).evaluate(lambda b: next(calls), batch_size=1000)
    assert metrics["probe_pair_acc"] == 1.0 and metrics["probe_knn_acc"] == 1.0 and metrics["probe_auc"] == 1.0
    files = sorted(p.relative_to(sample_dir) for p in sample_dir.rglob("*.png"))
    csv_path = sample_dir / "pairs.csv"  # pairs CSV paths are relative to the CSV: write it in a copy
    copy = tmp_path / "k"
    import shutil

    shutil.copytree(sample_dir, copy)
    csv_path = copy / "pairs.csv"
    csv_path.write_text(
        "path_a,path_b,same\n"
        + f"{files[0]},{files[1]},1\n{files[0]},{files[-1]},0\n{files[2]},{files[3]},1\n{files[2]},{files[-2]},0\n"
    )
    pprobe = Probe.from_path(csv_path, image_size=16)
    assert pprobe.labels is None and pprobe.images.shape[0] == 6
    cal, held = pprobe.calibration_pairs, pprobe.pairs
    assert cal is not None and cal[2].tolist() == [True, False] and held[2].tolist() == [True, False]
    assert {(int(a), int(b)) for a, b in zip(cal[0], cal[1], strict=True)}.isdisjoint(
        (int(a), int(b)) for a, b in zip(held[0], held[1], strict=True)
    )
    csv_path.write_text("path_a,path_b,same\n" + f"{files[0]},{files[1]},1\n{files[0]},{files[-1]},0\n")
    with pytest.raises(DataError, match="at least 4"):
        Probe.from_path(csv_path, image_size=16)


def test_probe_leaves_out_files_at_the_folder_root(sample_dir: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "labeled"
    for cls in ("ADIPOSE", "TUMOR"):
        shutil.copytree(next(p for p in sample_dir.iterdir() if p.name.endswith(cls)), root / cls)
    stray = next((root / "TUMOR").iterdir())
    shutil.copy(stray, root / "stray.png")
    probe = Probe.from_path(root, image_size=16, n_pairs=20)
    assert sorted(set(probe.labels.tolist())) == ["ADIPOSE", "TUMOR"]  # type: ignore[union-attr]
    assert probe.images.shape[0] == 16  # the root file is not a phantom "" class


def test_probe_accuracy_is_scored_on_pairs_the_threshold_was_not_tuned_on() -> None:
    emb = np.eye(6, dtype=np.float32)[:, :4].copy()
    emb[4] = [0.6, 0.8, 0, 0]
    emb[5] = [0.8, 0.6, 0, 0]
    # calibration: a "same" pair at cos 1.0, a "different" one at cos 0.96 -> threshold between them
    calibration = (np.array([0, 4]), np.array([0, 5]), np.array([True, False]))
    # held out: a "same" pair at cos 0.8 (below that threshold: wrong) and a "different" pair at 0 (right)
    held_out = (np.array([4, 0]), np.array([1, 2]), np.array([True, False]))
    probe = Probe(np.zeros((6, 3, 2, 2), np.uint8), None, held_out, calibration_pairs=calibration)
    out = probe.evaluate(lambda batch: emb[: len(batch)])
    assert 0.96 < out["probe_threshold_cos"] <= 1.0
    assert out["probe_pair_acc"] == 0.5  # tuned on the held-out pairs it would be 1.0
    assert out["probe_pairs_calibration"] == 2 and out["probe_pairs_held_out"] == 2


def test_folder_probe_halves_share_no_image(sample_dir: Path) -> None:
    probe = Probe.from_path(sample_dir, image_size=16, n_pairs=40)
    assert probe.calibration_pairs is not None
    cal = set(probe.calibration_pairs[0]) | set(probe.calibration_pairs[1])
    held = set(probe.pairs[0]) | set(probe.pairs[1])
    assert cal and held and not cal & held
