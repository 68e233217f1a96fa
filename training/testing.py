"""Helpers for other areas' fast tests: a real, loadable checkpoint of a randomly initialised model."""

from __future__ import annotations

from pathlib import Path

import torch

from training.byol import BYOL
from training.checkpoint import build_payload, save_checkpoint
from training.presets import get_preset


def make_untrained_checkpoint(
    path: str | Path, backbone: str = "resnet18", image_size: int = 64, seed: int = 0
) -> Path:
    """Write a valid checkpoint of a randomly initialised BYOL model (same format as the trainer's).

    Loadable by :meth:`training.encoder.Encoder.from_checkpoint`; the file is byte-identical for equal
    arguments (same library versions), so its SHA-256 is stable.

    Args:
        path: where to write the ``.pt`` file (parent folders are created).
        backbone: torchvision backbone name (``resnet18`` is fast on CPU; 512-d vectors).
        image_size: the encoder's input size.
        seed: initialisation seed.

    Returns:
        The path written.
    """
    config = get_preset("fast-cpu").with_overrides(
        {"backbone": backbone, "image_size": image_size, "seed": seed, "epochs": 1}
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BYOL(config.backbone, config.projection_dim, config.hidden_dim)
    state = {part: getattr(model, part).state_dict() for part in BYOL.PARTS}
    payload = build_payload(
        config={**config.to_dict(), "preset": "untrained"}, state=state, epoch=0, created_at="1970-01-01T00:00:00+00:00"
    )
    return save_checkpoint(path, payload)
