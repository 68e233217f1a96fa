"""Optimisers (SGD, AdamW, LARS) and the learning-rate schedule (linear warmup, then constant or cosine)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer


class LARS(Optimizer):
    """LARS (You et al. 2017) as used by BYOL: SGD with momentum and a layer-wise trust ratio.

    Parameter groups with ``lars_exclude=True`` (biases, batch-norm) get neither weight decay nor adaptation.
    """

    def __init__(
        self, params: Iterable[Any], lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 1e-3
    ) -> None:
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta, "lars_exclude": False}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if not group["lars_exclude"]:
                    d = d.add(p, alpha=group["weight_decay"])
                    p_norm, d_norm = torch.norm(p), torch.norm(d)
                    trust = torch.where(
                        (p_norm > 0) & (d_norm > 0), group["eta"] * p_norm / d_norm, torch.ones_like(p_norm)
                    )
                    d = d.mul(trust)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(group["momentum"]).add_(d)
                p.add_(mu, alpha=-group["lr"])
        return loss


def build_optimizer(
    params: Iterable[nn.Parameter], name: str, lr: float, momentum: float, weight_decay: float
) -> Optimizer:
    """Optimizer over ``params``; 1-d parameters (biases, norms) get no weight decay (and no LARS adaptation)."""
    plist = [p for p in params if p.requires_grad]
    weights = [p for p in plist if p.ndim > 1]
    others = [p for p in plist if p.ndim <= 1]
    if name == "sgd":
        return torch.optim.SGD(
            [{"params": weights, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}],
            lr=lr,
            momentum=momentum,
        )
    if name == "adamw":
        return torch.optim.AdamW(
            [{"params": weights, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}], lr=lr
        )
    if name == "lars":
        return LARS(
            [{"params": weights}, {"params": others, "lars_exclude": True, "weight_decay": 0.0}],
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
        )
    raise ValueError(f"unknown optimizer {name!r}")


def lr_at(step: int, total_steps: int, base_lr: float, schedule: str, warmup_steps: int = 0) -> float:
    """Learning rate at a global step: linear warmup to ``base_lr``, then constant or cosine decay to 0."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "cosine" and total_steps > warmup_steps:
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return base_lr


def steps_within_budget(
    global_step: int, planned_steps: int, budget_s: float, elapsed_s: float, timed_steps: int, timed_s: float
) -> int:
    """The run length (in optimiser steps) that ends inside a training-time budget, for the schedule to span.

    ``timed_steps`` steps took ``timed_s`` seconds (the run's first steps, slower while caches warm up, left out);
    at that rate the ``budget_s - elapsed_s`` seconds left hold ``n`` more steps, and the run is planned to end at
    ``global_step + n``, never later than ``planned_steps`` (a budget only shortens a run). Re-planned after every
    step, the plan follows the machine's real speed, and the cosine schedule (and an EMA schedule) still ends at the
    run's last step instead of being cut off half-way, which is what stopping when the time is up would do.
    """
    if timed_steps <= 0 or timed_s <= 0:
        return planned_steps
    left = max(0.0, budget_s - elapsed_s)
    return max(global_step, min(planned_steps, global_step + int(left * timed_steps / timed_s)))
