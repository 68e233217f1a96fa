"""BYOL math: loss against a hand computation, EMA update, no gradient to the target, schedules."""

from __future__ import annotations

import math

import pytest
import torch

from training.byol import BYOL, byol_loss, cosine_ema_rate, ema_update, mlp, symmetric_byol_loss


def test_loss_matches_hand_computation() -> None:
    p = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    z = torch.tensor([[0.0, 2.0], [3.0, 4.0]])
    # row 0: orthogonal -> cos 0 -> 2; row 1: identical direction -> cos 1 -> 0
    assert byol_loss(p, z).tolist() == pytest.approx([2.0, 0.0], abs=1e-6)
    p2 = torch.tensor([[1.0, 1.0]])
    z2 = torch.tensor([[1.0, 0.0]])
    assert byol_loss(p2, z2).item() == pytest.approx(2 - 2 / math.sqrt(2), abs=1e-6)
    # symmetric: mean over the batch of loss(p1, z2) + loss(p2, z1)
    p1, pp2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    z1, z2b = torch.tensor([[0.0, 1.0]]), torch.tensor([[-1.0, 0.0]])
    # loss(p1, z2b) = 2 - 2*(-1) = 4 ; loss(pp2, z1) = 0
    assert symmetric_byol_loss(p1, pp2, z1, z2b).item() == pytest.approx(4.0)


def test_ema_update_math() -> None:
    torch.manual_seed(0)
    online, target = mlp(4, 8, 2), mlp(4, 8, 2)
    before = [t.clone() for t in target.parameters()]
    ema_update(target, online, rate=0.9)
    for t_new, t_old, o in zip(target.parameters(), before, online.parameters(), strict=True):
        torch.testing.assert_close(t_new, 0.9 * t_old + 0.1 * o)
    ema_update(target, online, rate=0.0)  # rate 0 copies the online network
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        torch.testing.assert_close(t, o)


def test_cosine_ema_schedule_rises_from_base_to_one() -> None:
    assert cosine_ema_rate(0, 100, 0.99) == pytest.approx(0.99)
    assert cosine_ema_rate(50, 100, 0.99) == pytest.approx(0.995)
    assert cosine_ema_rate(100, 100, 0.99) == pytest.approx(1.0)


def test_no_gradient_reaches_target() -> None:
    torch.manual_seed(0)
    model = BYOL("resnet18", projection_dim=16, hidden_dim=32)
    x1, x2 = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    loss, feats, proj = model(x1, x2)
    loss.backward()
    assert feats.shape == (8, 512) and proj.shape == (8, 16)
    assert all(p.grad is None for p in model.target_encoder.parameters())
    assert all(p.grad is None for p in model.target_projector.parameters())
    assert not any(p.requires_grad for p in model.target_encoder.parameters())
    assert all(p.grad is not None for p in model.predictor.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.online_encoder.parameters())
    # the online parameter list (what the optimizer sees) excludes the target
    target_ids = {id(p) for p in [*model.target_encoder.parameters(), *model.target_projector.parameters()]}
    assert not target_ids & {id(p) for p in model.online_parameters()}


def test_forward_regresses_each_views_prediction_onto_the_other_views_target() -> None:
    """The loss is built from the parts: predictor(online(view a)) against target(view b), both ways.

    Fails when the predictor is bypassed, when both views are the same tensor inside ``forward``, or when the target
    branch is the online network (the EMA target is perturbed first so that the two differ).
    """
    torch.manual_seed(0)
    model = BYOL("resnet18", projection_dim=16, hidden_dim=32).eval()
    with torch.no_grad():
        for p in model.target_projector.parameters():
            p.add_(0.1 * torch.randn_like(p))
    v1, v2 = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    loss, _, _ = model(v1, v2)
    with torch.no_grad():
        pred = [model.predictor(model.online_projector(model.online_encoder(v))) for v in (v1, v2)]
        target = [model.target_projector(model.target_encoder(v)) for v in (v1, v2)]
    expected = (byol_loss(pred[0], target[1]) + byol_loss(pred[1], target[0])).mean()
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-4, atol=1e-5)
