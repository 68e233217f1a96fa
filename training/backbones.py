"""Torchvision ResNet / ResNeXt trunks that return pooled features, randomly initialised or from a local file.

No weights are ever downloaded: ``weights_path`` must point at a torchvision ``state_dict`` saved with ``torch.save``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision import models

from training.errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)


def resnet18_nopool(**kwargs: object) -> nn.Module:
    """ResNet-18 without the stem's max-pool: a stem for small inputs (output stride 16 instead of 32).

    A 64 px training crop keeps a 4 x 4 layer-4 map instead of 2 x 2, at about four times the FLOPs of ``resnet18``
    for the same input. Same parameters as ``resnet18`` (the max-pool has none), so torchvision ``resnet18``
    weights load into it.
    """
    model = models.resnet18(**kwargs)  # type: ignore[arg-type]
    model.maxpool = nn.Identity()
    return model


#: Supported backbones: name -> (torchvision constructor, pooled feature dimension).
BACKBONES: dict[str, tuple[Callable[..., nn.Module], int]] = {
    "resnet18": (models.resnet18, 512),
    "resnet18-nopool": (resnet18_nopool, 512),
    "resnet50": (models.resnet50, 2048),
    "resnext50_32x4d": (models.resnext50_32x4d, 2048),
    "resnext101_32x8d": (models.resnext101_32x8d, 2048),
}


def backbone_dim(name: str) -> int:
    """Pooled feature dimension of a supported backbone.

    Raises:
        ConfigError: unknown backbone name.
    """
    _check_name(name)
    return BACKBONES[name][1]


def _check_name(name: str) -> None:
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}: choose one of {', '.join(sorted(BACKBONES))}")


def build_backbone(name: str, weights_path: str | Path | None = None) -> nn.Module:
    """Build a trunk mapping ``(B, 3, H, W)`` float images to ``(B, D)`` pooled features (``fc`` replaced by identity).

    Args:
        name: one of :data:`BACKBONES`.
        weights_path: optional local torchvision ``state_dict`` file (e.g. ImageNet weights the user downloaded);
            the classifier (``fc.*``) entries are ignored. ``None`` = random initialisation.

    Raises:
        ConfigError: unknown backbone name.
        CheckpointError: the weights file is missing, unreadable or does not fit the backbone.
    """
    _check_name(name)
    constructor, _ = BACKBONES[name]
    model = constructor(weights=None)
    model.fc = nn.Identity()
    if weights_path is not None:
        load_backbone_weights(model, name, Path(weights_path))
    return model


def load_backbone_weights(model: nn.Module, name: str, path: Path) -> None:
    """Load a torchvision state_dict file into ``model`` (``fc`` entries dropped), strictly otherwise."""
    if not path.is_file():
        raise CheckpointError(f"backbone weights file {path} does not exist: pass an existing torchvision state_dict")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt / pickled file
        raise CheckpointError(
            f"cannot read backbone weights {path} ({type(exc).__name__}): save them with torch.save(state_dict)"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"backbone weights {path} is not a state_dict (got {type(state).__name__})")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"backbone weights {path} do not fit {name}: {str(exc).splitlines()[0]}") from exc
    logger.info("initialised %s from %s", name, path)
