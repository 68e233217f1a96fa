"""The BYOL model: online encoder + projector + predictor, and an EMA target (encoder + projector).

Ordered like lucidrains' ``byol_pytorch.py``: loss, EMA, MLP head, model. The two views go through each network
as one ``2B`` batch (batch-norm statistics over both views, as byol-pytorch does).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from training.backbones import backbone_dim, build_backbone

# loss


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample BYOL regression loss ``2 - 2 cos(p, z)``.

    Args:
        prediction: ``(B, P)`` online predictions.
        target: ``(B, P)`` target projections (should carry no gradient).

    Returns:
        ``(B,)`` losses in ``[0, 4]``.
    """
    p = F.normalize(prediction.float(), dim=-1)
    z = F.normalize(target.float(), dim=-1)
    return 2.0 - 2.0 * (p * z).sum(dim=-1)


def symmetric_byol_loss(
    pred1: torch.Tensor, pred2: torch.Tensor, target1: torch.Tensor, target2: torch.Tensor
) -> torch.Tensor:
    """Symmetrised loss: ``mean(loss(p1, z2) + loss(p2, z1))`` (scalar, in ``[0, 8]``)."""
    return (byol_loss(pred1, target2.detach()) + byol_loss(pred2, target1.detach())).mean()


# EMA


def cosine_ema_rate(step: int, total_steps: int, base: float) -> float:
    """BYOL paper's schedule: ``1 - (1 - base) (cos(pi k / K) + 1) / 2``, rising from ``base`` to 1."""
    if total_steps <= 0:
        return base
    k = min(max(step, 0), total_steps)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * k / total_steps) + 1.0) / 2.0


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, rate: float) -> None:
    """``target <- rate * target + (1 - rate) * online`` for parameters; buffers (BN statistics) are copied."""
    t_params: list[torch.Tensor] = list(target.parameters())
    o_params = [p.detach() for p in online.parameters()]
    if len(t_params) != len(o_params):
        raise ValueError("target and online networks differ in structure")
    torch._foreach_lerp_(t_params, o_params, 1.0 - rate)  # one fused kernel launch per group of tensors
    for tb, ob in zip(target.buffers(), online.buffers(), strict=True):
        tb.copy_(ob)


# MLP head


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """BYOL projector / predictor: Linear -> BatchNorm -> ReLU -> Linear."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )


# model


class BYOL(nn.Module):
    """Online and target networks of BYOL around an injected backbone.

    Args:
        backbone: torchvision backbone name (see :data:`training.backbones.BACKBONES`).
        projection_dim: projector / predictor output size (paper recipe: 512).
        hidden_dim: projector / predictor hidden size (2048).
        weights_path: optional local torchvision state_dict to initialise the backbone.
    """

    #: Sub-modules saved in a checkpoint, by name.
    PARTS = ("online_encoder", "online_projector", "predictor", "target_encoder", "target_projector")

    def __init__(
        self, backbone: str, projection_dim: int = 512, hidden_dim: int = 2048, weights_path: str | None = None
    ) -> None:
        super().__init__()
        feat = backbone_dim(backbone)
        self.feature_dim = feat
        self.online_encoder = build_backbone(backbone, weights_path)
        self.online_projector = mlp(feat, hidden_dim, projection_dim)
        self.predictor = mlp(projection_dim, hidden_dim, projection_dim)
        self.target_encoder = copy.deepcopy(self.online_encoder)
        self.target_projector = copy.deepcopy(self.online_projector)
        for p in [*self.target_encoder.parameters(), *self.target_projector.parameters()]:
            p.requires_grad_(False)

    def online_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimizer updates (online encoder, projector, predictor)."""
        return [*self.online_encoder.parameters(), *self.online_projector.parameters(), *self.predictor.parameters()]

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One BYOL step's forward pass.

        Args:
            view1: ``(B, 3, S, S)`` normalised first views.
            view2: ``(B, 3, S, S)`` second views of the same images.

        Returns:
            ``(loss, online_features, online_projections)``: scalar loss; ``(2B, F)`` backbone features and
            ``(2B, P)`` projections (detached, for the collapse monitor).
        """
        images = torch.cat([view1, view2], dim=0)
        feats = self.online_encoder(images)
        proj = self.online_projector(feats)
        pred = self.predictor(proj)
        with torch.no_grad():
            target = self.target_projector(self.target_encoder(images))
        b = view1.shape[0]
        loss = symmetric_byol_loss(pred[:b], pred[b:], target[:b], target[b:])
        return loss, feats.detach(), proj.detach()

    @torch.no_grad()
    def update_target(self, rate: float) -> None:
        """EMA step of the target encoder and projector towards the online ones."""
        ema_update(self.target_encoder, self.online_encoder, rate)
        ema_update(self.target_projector, self.online_projector, rate)
