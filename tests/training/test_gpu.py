"""GPU checks (skipped without CUDA): same views on GPU as on CPU, bf16 encoder close to fp32, a CUDA train step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.training.conftest import tiny_config
from training.augment import byol_views
from training.encoder import Encoder
from training.testing import make_untrained_checkpoint
from training.trainer import train

pytestmark = pytest.mark.gpu


def test_views_match_cpu(sample_dir: Path) -> None:
    x = torch.randint(0, 256, (8, 3, 48, 48), dtype=torch.uint8)
    for view in byol_views(32, rot90_prob=0.5, stain_jitter_prob=0.5):
        cpu = view(x, torch.Generator().manual_seed(3))
        gpu = view(x.cuda(), torch.Generator().manual_seed(3)).cpu()
        torch.testing.assert_close(gpu, cpu, atol=2e-3, rtol=0)


def test_bf16_encoder_close_to_cpu(tmp_path: Path, sample_dir: Path) -> None:
    ck = make_untrained_checkpoint(tmp_path / "u.pt")
    ims = [Image.open(p) for p in sorted(sample_dir.rglob("*.png"))[:8]]
    cpu = Encoder.from_checkpoint(ck, "cpu").embed(ims)
    gpu = Encoder.from_checkpoint(ck, "cuda").embed(ims)
    assert np.all(np.sum(cpu * gpu, axis=1) > 0.99)


def test_cuda_training_steps(tmp_path: Path, sample_dir: Path) -> None:
    result = train(sample_dir, tiny_config(epochs=1, device="cuda", num_workers=2), tmp_path / "g.pt",
                   max_steps_per_epoch=2)  # fmt: skip
    assert np.isfinite(result.metrics[0]["loss"])
    assert Encoder.from_checkpoint(tmp_path / "g.pt", "cuda").device.type == "cuda"
