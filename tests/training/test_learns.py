"""Training learns: the product's ``train()`` makes a small CNN invariant to what BYOL's views vary, on unseen images.

Issue #10 item 4. Seeded, CPU, one short run (120 steps of 64 on 32 px images; 1-3 min on a loaded 2-core
machine). The data are synthetic striped / checked textures with random foreground and background colours. An
untrained CNN's pooled features are dominated by colour, so two colour-jittered versions of one held-out image look
little alike to it. BYOL's views jitter colour
(brightness, contrast, saturation, any hue), so a working BYOL pulls those versions together: the *instance AUC*
(two views of one held-out image against views of different held-out images, scored on the backbone features the
product stores) must rise by :data:`MARGIN` over the same-seed untrained encoder.

Mutation check (run once by hand, numbers in the commit message and BENCHMARKS.md): each broken BYOL part below makes
this test fail.

- views identical (``forward(v1, v1)``): no invariance is taught; gain -0.023;
- predictor removed: gain +0.010 (with EMA 0.99 it still gained +0.084 in this short run; EMA 0.9 is used here);
- no stop-gradient (the target branch is the online network, with gradient): collapse, gain -0.069;
- target == online with no EMA (``update_target`` copies the online weights): this is SimSiam, which does learn
  (+0.164), so the AUC check alone cannot catch it; the EMA check at the end does (the saved target must be a lagging
  average, not a copy of the online network: gap 0.0 against 0.0008-0.0012 for BYOL).

``tests/training/test_byol.py`` checks the same parts at the unit level (loss built from predictor and target, no
gradient into the target, the EMA formula).

The backbone is a four-layer CNN registered for this test (an earlier attempt with ResNet-18 on 16-32 px crops moved
within seed noise in the same time);
everything else is the product's: ``TrainConfig``, ``train``, ``write_untrained``, ``Encoder.from_checkpoint``,
``ViewTransform`` and ``roc_auc``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import training.backbones as backbones
from training.augment import ViewTransform
from training.checkpoint import load_checkpoint
from training.encoder import Encoder
from training.presets import get_preset
from training.probe import roc_auc
from training.trainer import train, write_untrained

SIZE = 32
EPOCHS = 30  # x 4 steps of 64 on 256 images
LR, EMA_RATE = 5e-3, 0.9  # a short run learns faster with a faster target (0.99: gains of only 0.04-0.06)
MARGIN = (
    0.06  # instance-AUC gain over the untrained twin: seeds 0-3 gain 0.105-0.155, mutations <= 0.01 (BENCHMARKS.md)
)
COLOUR_VIEW: dict[str, Any] = {
    "crop_scale": (0.4, 1.0),
    "hflip_prob": 0.5,
    "jitter_prob": 1.0,
    "brightness": 0.4,
    "contrast": 0.4,
    "saturation": 0.5,
    "hue": 0.5,
    "grayscale_prob": 0.3,
    "blur_prob": 0.0,
}


class SmallCNN(nn.Module):
    """Four 3x3 conv-BN-ReLU layers and global average pooling: 128-d features (``fc`` as torchvision has it)."""

    def __init__(self, weights: object = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for cin, cout, stride in ((3, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2)):
            layers += [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.fc: nn.Module = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).mean(dim=(2, 3)))


def textures(n: int, seed: int) -> list[np.ndarray]:
    """``n`` RGB uint8 images: horizontal stripes, vertical stripes or checks, random period, phase and colours."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    out = []
    for i in range(n):
        period, phase = rng.uniform(4, 8), rng.uniform(0, 8)
        rows, cols = ((yy + phase) % period) < period / 2, ((xx + phase) % period) < period / 2
        mask = (rows, cols, rows ^ cols)[i % 3]
        fg, bg = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        img = np.where(mask[..., None], fg, bg) + rng.normal(0, 0.04, (SIZE, SIZE, 3))
        out.append((np.clip(img, 0, 1) * 255).astype(np.uint8))
    return out


def colour_views(images: list[np.ndarray], seed: int) -> tuple[list[Image.Image], list[Image.Image]]:
    """Two colour-jittered versions of each image (the product's ``ViewTransform``, no crop, no flip)."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    view = ViewTransform(
        output_size=SIZE,
        **{**COLOUR_VIEW, "crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0), "hflip_prob": 0.0, "grayscale_prob": 0.0},
        normalize=False,
    )
    g = torch.Generator().manual_seed(seed)

    def pil(t: torch.Tensor) -> list[Image.Image]:
        arr = (t * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return [Image.fromarray(a) for a in arr]

    return pil(view(x, g)), pil(view(x, g))


def instance_auc(checkpoint: Path, views: tuple[list[Image.Image], list[Image.Image]]) -> float:
    """AUC of cos(view a of image i, view b of image i) against cos(view a of i, view b of j != i)."""
    encoder = Encoder.from_checkpoint(checkpoint, "cpu")
    za, zb = encoder.embed(views[0]), encoder.embed(views[1])
    sims = za @ zb.T
    return roc_auc(sims.ravel(), np.eye(len(za), dtype=bool).ravel())


def learning_run(tmp_path: Path, seed: int = 0) -> tuple[float, float, float]:
    """Train on 256 textures, then ``(trained AUC, untrained AUC, largest |online - target| weight gap)``.

    Runs on one thread (two spin-wait on a shared 2-core machine) and restores the process's thread count after:
    other tests compare runs bit for bit, and a thread count changed between their runs changes the sums' order.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _learning_run(tmp_path, seed)
    finally:
        torch.set_num_threads(threads)


def _learning_run(tmp_path: Path, seed: int) -> tuple[float, float, float]:
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    for i, img in enumerate(textures(256, seed=1 + seed)):
        Image.fromarray(img).save(train_dir / f"t{i:03d}.png")
    config = get_preset("fast-cpu").with_overrides(
        {
            "backbone": "small-cnn",
            "image_size": SIZE,
            "epochs": EPOCHS,
            "batch_size": 64,
            "lr": LR,
            "ema_rate": EMA_RATE,
            "warmup_epochs": 0.0,
            "projection_dim": 64,
            "hidden_dim": 256,
            "seed": seed,
        }
    )
    config = dataclasses.replace(
        config,
        view1=ViewTransform(output_size=SIZE, **COLOUR_VIEW),
        view2=ViewTransform(output_size=SIZE, **COLOUR_VIEW),
    )
    result = train(train_dir, config, tmp_path / "ours.pt")
    write_untrained(train_dir, config, tmp_path / "untrained.pt")
    held_out = colour_views(textures(150, seed=5000 + seed), seed=7)  # images never trained on
    trained, untrained = instance_auc(result.checkpoint, held_out), instance_auc(tmp_path / "untrained.pt", held_out)
    state = load_checkpoint(result.checkpoint)["state"]
    online, target = state["online_encoder"], state["target_encoder"]
    gap = max(float((online[k].float() - target[k].float()).abs().max()) for k in online if k.endswith("weight"))
    return trained, untrained, gap


@pytest.mark.slow
def test_byol_training_makes_held_out_views_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(backbones.BACKBONES, "small-cnn", (SmallCNN, 128))
    trained, untrained, gap = learning_run(tmp_path)
    assert trained - untrained >= MARGIN, f"held-out instance AUC {untrained:.3f} untrained -> {trained:.3f} trained"
    # The target must be an exponential moving average that lags the online network, not a copy of it.
    assert gap > 1e-4, "target encoder equals the online encoder: the EMA target is missing"
