"""Shared helpers for the training benchmarks: machine / version header, table printing, BYOL PIL baseline."""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from collections.abc import Sequence
from typing import Any

import torch
import torchvision


def header(title: str) -> str:
    """Exact command, machine, date and versions."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    lines = [
        f"## {title}",
        f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}",
        f"machine: {platform.node()} | {platform.processor() or platform.machine()} | {os.cpu_count()} CPU cores | "
        f"GPU: {gpu}",
        f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}",
        f"versions: python {platform.python_version()}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}",
        f"load average at start: {', '.join(f'{v:.2f}' for v in os.getloadavg())}",
    ]
    return "\n".join(lines)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        out.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(out)


def pil_byol_transforms(size: int) -> tuple[Any, Any]:
    """The study's / byol-pytorch-style per-image PIL pipeline (torchvision v1 transforms), BYOL view 1 and 2."""
    from torchvision import transforms as T

    def view(blur_p: float, sol_p: float) -> Any:
        return T.Compose(
            [
                T.RandomResizedCrop(size, scale=(0.08, 1.0)),
                T.RandomHorizontalFlip(),
                T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
                T.RandomGrayscale(p=0.2),
                T.RandomApply([T.GaussianBlur(23, sigma=(0.1, 2.0))], p=blur_p),
                T.RandomSolarize(128, p=sol_p),
                T.ToTensor(),
                T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
            ]
        )

    return view(1.0, 0.0), view(0.1, 0.2)
