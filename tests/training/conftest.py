"""Tiny, fast training configurations on the shipped sample (CPU, resnet18, 32 px)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import TrainConfig
from training.presets import get_preset


def tiny_config(**overrides: object) -> TrainConfig:
    """fast-cpu preset shrunk to seconds: 32 px, batch 8, small heads, 2 epochs."""
    values: dict[str, object] = {
        "image_size": 32,
        "batch_size": 8,
        "projection_dim": 32,
        "hidden_dim": 64,
        "epochs": 2,
        "device": "cpu",
        "probe_pairs": 40,
    }
    values.update(overrides)
    return get_preset("fast-cpu").with_overrides(values)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> tuple[Path, object]:
    """One 2-epoch run on the shipped sample, shared by the checkpoint tests: (checkpoint, TrainResult)."""
    from training.trainer import train

    out = tmp_path_factory.mktemp("tiny_run") / "byol.pt"
    result = train(sample_dir, tiny_config(), out, labeled=sample_dir, max_steps_per_epoch=2)
    return out, result
