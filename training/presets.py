"""Named training presets: ``paper`` (the study's recipe), ``fast-cpu`` (the shipped sample in minutes on 2 cores)
and ``recommended`` (our best guess at a recipe that learns; not yet validated on a GPU, see docs/training.md)."""

from __future__ import annotations

from typing import Any

from training.augment import ViewTransform
from training.config import TrainConfig
from training.errors import ConfigError

_HISTO_EXTRAS: dict[str, Any] = {"vflip_prob": 0.5, "rot90_prob": 0.75, "stain_jitter_prob": 0.5}


def _paper() -> TrainConfig:
    return TrainConfig(preset="paper")


def _fast_cpu() -> TrainConfig:
    return TrainConfig(
        preset="fast-cpu",
        backbone="resnet18",
        image_size=64,
        projection_dim=128,
        hidden_dim=512,
        epochs=5,
        batch_size=16,
        optimizer="adamw",
        lr=1e-3,
        weight_decay=1e-4,
        lr_schedule="cosine",
        ema_rate=0.99,
        probe_pairs=200,
    )


def _recommended() -> TrainConfig:
    return TrainConfig(
        preset="recommended",
        backbone="resnext50_32x4d",
        image_size=224,
        epochs=200,
        batch_size=256,
        optimizer="lars",
        lr=0.2 * 256 / 256,
        weight_decay=1.5e-6,
        lr_schedule="cosine",
        warmup_epochs=10,
        ema_rate=0.99,
        ema_schedule="cosine",
        center_features=True,
        view1=ViewTransform(blur_prob=1.0, solarize_prob=0.0, crop_scale=(0.2, 1.0), **_HISTO_EXTRAS),
        view2=ViewTransform(blur_prob=0.1, solarize_prob=0.2, crop_scale=(0.2, 1.0), **_HISTO_EXTRAS),
    )


PRESETS = {"paper": _paper, "fast-cpu": _fast_cpu, "recommended": _recommended}


def get_preset(name: str) -> TrainConfig:
    """A fresh :class:`TrainConfig` of the named preset.

    Raises:
        ConfigError: unknown preset name.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
