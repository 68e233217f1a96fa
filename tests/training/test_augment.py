"""Batched augmentations: shapes, reproducibility under a seed, each op against a reference."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from training.augment import ViewTransform, apply_colour_jitter, byol_views, gaussian_blur
from training.preprocess import IMAGENET_MEAN, IMAGENET_STD, resize_center_crop

IDENTITY: dict[str, Any] = {
    "crop_scale": (1.0, 1.0),
    "crop_ratio": (1.0, 1.0),
    "hflip_prob": 0.0,
    "jitter_prob": 0.0,
    "grayscale_prob": 0.0,
    "blur_prob": 0.0,
    "solarize_prob": 0.0,
    "normalize": False,
}


@pytest.fixture(scope="module")
def batch(sample_dir: Path) -> torch.Tensor:
    files = sorted(sample_dir.rglob("*.png"))[:6]
    return torch.from_numpy(np.stack([resize_center_crop(Image.open(f), 48) for f in files]))


@pytest.mark.parametrize("size", [32, 40])
def test_views_have_right_shape_and_range(batch: torch.Tensor, size: int) -> None:
    v1, v2 = byol_views(size, vflip_prob=0.5, rot90_prob=0.5, stain_jitter_prob=0.5)
    for view in (v1, v2):
        out = view(batch, torch.Generator().manual_seed(0))
        assert out.shape == (batch.shape[0], 3, size, size) and out.dtype == torch.float32
        assert torch.isfinite(out).all()
        raw = ViewTransform(**{**view.__dict__, "normalize": False})(batch, torch.Generator().manual_seed(0))
        assert raw.min() >= 0 and raw.max() <= 1


def test_views_reproducible_under_seed(batch: torch.Tensor) -> None:
    v1, v2 = byol_views(32, rot90_prob=0.5, stain_jitter_prob=0.5)
    a = v2(batch, torch.Generator().manual_seed(7))
    b = v2(batch, torch.Generator().manual_seed(7))
    c = v2(batch, torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    assert not torch.allclose(v1(batch, torch.Generator().manual_seed(7)), a)  # asymmetric views differ


def test_all_off_is_identity(batch: torch.Tensor) -> None:
    out = ViewTransform(output_size=48, **IDENTITY)(batch)
    torch.testing.assert_close(out, batch.float() / 255, atol=1e-5, rtol=0)


def test_normalisation_and_flip(batch: torch.Tensor) -> None:
    flip = ViewTransform(output_size=48, **{**IDENTITY, "hflip_prob": 1.0, "normalize": True})
    out = flip(batch)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(out * std + mean, batch.float().flip(-1) / 255, atol=1e-5, rtol=0)


def test_rot90_rotates(batch: torch.Tensor) -> None:
    rot = ViewTransform(output_size=48, **{**IDENTITY, "rot90_prob": 1.0})
    out = rot(batch, torch.Generator().manual_seed(0))
    x = batch.float() / 255
    for i in range(batch.shape[0]):
        candidates = [torch.rot90(x[i], k, dims=(1, 2)) for k in range(4)]
        assert min(float((out[i] - c).abs().max()) for c in candidates) < 1e-5


def test_blur_matches_torchvision(batch: torch.Tensor) -> None:
    x = batch.float() / 255
    ours = gaussian_blur(x, torch.full((x.shape[0],), 1.5), 9)
    ref = TF.gaussian_blur(x, kernel_size=[9, 9], sigma=[1.5, 1.5])
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_solarize_and_grayscale(batch: torch.Tensor) -> None:
    x = batch.float() / 255
    sol = ViewTransform(output_size=48, **{**IDENTITY, "solarize_prob": 1.0})(batch)
    torch.testing.assert_close(sol, torch.where(x >= 0.5, 1 - x, x), atol=1e-5, rtol=0)
    gray = ViewTransform(output_size=48, **{**IDENTITY, "grayscale_prob": 1.0})(batch)
    torch.testing.assert_close(gray, TF.rgb_to_grayscale(x, num_output_channels=3), atol=1e-3, rtol=0)


def test_jitter_and_stain_change_colour_but_zero_strength_does_not(batch: torch.Tensor) -> None:
    zero = ViewTransform(
        output_size=48, **{**IDENTITY, "jitter_prob": 1.0, "brightness": 0, "contrast": 0, "saturation": 0, "hue": 0}
    )
    torch.testing.assert_close(zero(batch), batch.float() / 255, atol=1e-5, rtol=0)
    jit = ViewTransform(output_size=48, **{**IDENTITY, "jitter_prob": 1.0})(batch)
    stain = ViewTransform(output_size=48, **{**IDENTITY, "stain_jitter_prob": 1.0, "stain_jitter_sigma": 0.2})(batch)
    assert float((jit - batch.float() / 255).abs().mean()) > 0.01
    no_stain = ViewTransform(output_size=48, **{**IDENTITY, "stain_jitter_prob": 1.0, "stain_jitter_sigma": 0.0})
    torch.testing.assert_close(no_stain(batch), batch.float() / 255, atol=2e-3, rtol=0)
    assert float((stain - batch.float() / 255).abs().mean()) > 0.005


def test_hue_shift_goes_both_ways() -> None:
    """Planted bug: clamping the hue shift at 0 (as the multiplicative factors are) leaves only positive shifts."""
    pink = torch.tensor([200, 120, 170], dtype=torch.uint8).view(1, 3, 1, 1).expand(256, 3, 8, 8).contiguous()
    hue_only = {**IDENTITY, "jitter_prob": 1.0, "brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.2}
    out = ViewTransform(output_size=8, **hue_only)(pink, torch.Generator().manual_seed(0))
    yiq = torch.tensor([[0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    iq_in = yiq @ (pink[0, :, 0, 0].float() / 255)
    iq_out = out[:, :, 0, 0] @ yiq.t()
    angle = torch.atan2(iq_out[:, 1], iq_out[:, 0]) - torch.atan2(iq_in[1], iq_in[0])
    angle = torch.remainder(angle + math.pi, 2 * math.pi) - math.pi
    assert (angle < -0.05).sum() > 50 and (angle > 0.05).sum() > 50


def test_colour_jitter_order_is_drawn_per_sample() -> None:
    """Planted bug: one op order for the whole batch (``torch.randperm(4)`` shared by every row)."""
    view = ViewTransform(output_size=8, **{**IDENTITY, "jitter_prob": 1.0})
    factors, order = view.jitter_params(torch.ones(64, dtype=torch.bool), torch.Generator().manual_seed(0))
    assert order.shape == (64, 4) and (order.sort(dim=1).values == torch.arange(4)).all()
    assert len({tuple(r) for r in order.tolist()}) > 5
    assert factors[:, :3].min() >= 0


def test_colour_jitter_applies_each_samples_own_order(batch: torch.Tensor) -> None:
    """Brightness then saturation differs from saturation then brightness (clamping): each row keeps its order."""
    x = batch[:2].float() / 255
    x = torch.cat([x[:1], x[:1]])  # the same image twice, two different orders
    factors = torch.tensor([[1.8, 1.0, 0.2, 0.0], [1.8, 1.0, 0.2, 0.0]])
    order = torch.tensor([[0, 2, 1, 3], [2, 0, 1, 3]])
    out = apply_colour_jitter(x, factors, order)
    first = apply_colour_jitter(x[:1], factors[:1], order[:1])
    second = apply_colour_jitter(x[1:], factors[1:], order[1:])
    torch.testing.assert_close(out, torch.cat([first, second]), atol=1e-6, rtol=0)
    assert float((out[0] - out[1]).abs().max()) > 0.05
