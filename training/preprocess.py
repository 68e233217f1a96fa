"""Deterministic image preprocessing shared by training (decode on CPU workers) and the :class:`Encoder`.

Images become ``uint8`` arrays ``(3, S, S)``: RGB, shorter side resized to ``S`` (antialiased), centre crop. The
float conversion and the ImageNet normalisation happen later, batched, on the model's device.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

#: ImageNet channel statistics used by torchvision backbones (training and eval use the same ones).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_center_crop(image: Image.Image, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` and centre-crop a square.

    Args:
        image: any PIL image (converted to RGB).
        size: output side length ``S``.

    Returns:
        ``uint8`` array of shape ``(3, S, S)``.
    """
    rgb = image.convert("RGB")
    w, h = rgb.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if (new_w, new_h) != (w, h):
        rgb = rgb.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=None)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    rgb = rgb.crop((left, top, left + size, top + size))
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1))


def normalize_batch(batch: torch.Tensor) -> torch.Tensor:
    """Turn ``(B, 3, H, W)`` floats in ``[0, 1]`` into ImageNet-normalised floats (same device and dtype)."""
    mean = torch.tensor(IMAGENET_MEAN, device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
    return (batch - mean) / std


def uint8_to_float(batch: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` uint8 -> float32 in ``[0, 1]``; float input is returned as float32 unchanged."""
    if batch.dtype == torch.uint8:
        return batch.float().div_(255.0)
    return batch.float()
