"""The :class:`Encoder`: a trained checkpoint turned into L2-normalised image vectors, the same way everywhere.

Ingestion, retrieval and the dashboard all load checkpoints through :meth:`Encoder.from_checkpoint`. The eval
transform is deterministic: RGB, shorter side resized to the checkpoint's eval size (``embed_size``, else the trained
``image_size``), centre crop, ImageNet normalisation on the device. On CUDA the forward runs under bf16 autocast
in ``channels_last``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from training.backbones import backbone_dim, build_backbone
from training.byol import mlp
from training.checkpoint import file_sha256, load_checkpoint
from training.errors import CheckpointError, InputError
from training.preprocess import normalize_batch, resize_center_crop, uint8_to_float
from training.readout import TextureHead

logger = logging.getLogger(__name__)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` / ``"auto"`` -> CUDA when available, else CPU; otherwise ``torch.device(device)``."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def native_cpu_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (``avx512_bf16`` or ``amx_bf16`` in ``/proc/cpuinfo``; False
    where that file is absent). bf16 autocast is faster than float32 there and slower on other CPUs."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class Encoder:
    """Images -> ``(N, D)`` float32 L2-normalised vectors.

    Attributes:
        dim: vector size ``D`` (2048 for ResNeXt backbone features, ``projection_dim`` for projections).
        backbone: torchvision backbone name.
        representation: ``"backbone"`` (pooled features, default), ``"projection"`` (projector output) or
            ``"texture"`` (second-order statistics of the early stages on axes fitted to the training images,
            :mod:`training.readout`).
        image_size: side ``S`` of the model input.
        checkpoint_sha256: SHA-256 of the checkpoint file (identifies the encoder version).
        config: the training configuration stored in the checkpoint (plain dict).
        device: where the model runs.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        dim: int,
        backbone: str,
        representation: str,
        image_size: int,
        checkpoint_sha256: str,
        config: dict[str, Any],
        device: torch.device,
    ) -> None:
        self.model = model.eval().to(device)
        self.dim = dim
        self.backbone = backbone
        self.representation = representation
        self.image_size = image_size
        self.checkpoint_sha256 = checkpoint_sha256
        self.config = config
        self.device = device
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device | None = None,
        *,
        representation: str | None = None,
        backbone: str | None = None,
    ) -> Encoder:
        """Rebuild the trained online encoder from a checkpoint.

        Args:
            path: checkpoint written by the trainer or :func:`training.testing.make_untrained_checkpoint`.
            device: ``None`` / ``"auto"`` picks CUDA when available.
            representation: override the checkpoint's representation (``"backbone"``, ``"projection"``, or
                ``"texture"`` when the checkpoint holds a fitted texture read-out).
            backbone: if given, the backbone the caller expects; a checkpoint of another backbone is an error.

        Raises:
            CheckpointError: missing / corrupt file, another backbone, or weights that do not fit.
        """
        payload = load_checkpoint(path)
        config = dict(payload["config"])
        name = str(config.get("backbone", ""))
        if backbone is not None and backbone != name:
            raise CheckpointError(f"checkpoint {path} holds a {name} encoder, not {backbone}: pick the right file")
        rep = representation or str(config.get("representation", "backbone"))
        if rep not in ("backbone", "projection", "texture"):
            raise CheckpointError(f"representation must be 'backbone', 'projection' or 'texture', got {rep!r}")
        try:
            trunk = build_backbone(name)
        except Exception as exc:
            raise CheckpointError(f"checkpoint {path}: cannot build backbone {name!r} ({exc})") from exc
        state = payload["state"]
        _load_part(trunk, state, "online_encoder", path, name)
        model: nn.Module = trunk
        dim = backbone_dim(name)
        if rep == "projection":
            proj = mlp(dim, int(config["hidden_dim"]), int(config["projection_dim"]))
            _load_part(proj, state, "online_projector", path, name)
            model, dim = nn.Sequential(trunk, proj), int(config["projection_dim"])
        if rep == "texture":
            fitted = payload.get("texture_readout")
            if not isinstance(fitted, dict):
                raise CheckpointError(
                    f"checkpoint {path} holds no fitted texture read-out: train with --representation texture"
                )
            head = TextureHead(trunk, fitted)
            model, dim = head, head.dim
        elif config.get("center_features"):
            mean = payload.get("projection_mean" if rep == "projection" else "feature_mean")
            if not isinstance(mean, torch.Tensor) or tuple(mean.shape) != (dim,):
                raise CheckpointError(f"checkpoint {path} asks for centred features but holds no {dim}-d mean")
            model = _Centered(model, mean.float())
        enc = cls(
            model,
            dim=dim,
            backbone=name,
            representation=rep,
            image_size=int(config.get("embed_size") or config["image_size"]),
            checkpoint_sha256=file_sha256(path),
            config=config,
            device=resolve_device(device),
        )
        logger.info("loaded %s encoder (%s, %d-d, %d px) from %s", name, rep, dim, enc.image_size, path)
        return enc

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """Deterministic eval transform on the CPU: ``uint8`` array ``(3, S, S)``."""
        return resize_center_crop(image, self.image_size)

    @torch.inference_mode()
    def embed_uint8(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """Embed a preprocessed batch.

        Args:
            batch: ``(B, 3, S, S)`` uint8 (numpy or torch, any device).

        Returns:
            ``(B, D)`` float32, L2-normalised rows.

        Raises:
            InputError: wrong shape or dtype.
        """
        x = torch.from_numpy(np.ascontiguousarray(batch)) if isinstance(batch, np.ndarray) else batch
        s = self.image_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, s, s) or x.dtype != torch.uint8:
            raise InputError(
                f"embed_uint8 expects a uint8 batch of shape (B, 3, {s}, {s}), got {x.dtype} {tuple(x.shape)}: "
                "use Encoder.preprocess on each image first"
            )
        if x.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        cuda = self.device.type == "cuda"
        x = x.to(self.device, non_blocking=cuda)
        x = normalize_batch(uint8_to_float(x))
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda):
            out = self.model(x)
        out = F.normalize(out.float(), dim=1)
        return out.cpu().numpy().astype(np.float32, copy=False)

    def embed(self, images: Sequence[Image.Image], batch_size: int = 64) -> np.ndarray:
        """Embed PIL images in batches: ``(N, D)`` float32, L2-normalised (``(0, D)`` for no images)."""
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        chunks = []
        for start in range(0, len(images), batch_size):
            arr = np.stack([self.preprocess(im) for im in images[start : start + batch_size]])
            chunks.append(self.embed_uint8(arr))
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(chunks, axis=0)


class _Centered(nn.Module):
    """Subtracts the training-set mean vector (feature centring) from the wrapped model's output."""

    def __init__(self, model: nn.Module, mean: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).float() - self.mean


def _load_part(module: nn.Module, state: dict[str, Any], part: str, path: str | Path, name: str) -> None:
    if part not in state:
        raise CheckpointError(f"checkpoint {path} has no {part!r} weights: it is incomplete, re-train")
    try:
        module.load_state_dict(state[part], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {path}: {part} weights do not fit a {name} ({str(exc).splitlines()[0]}); "
            "the file was trained with another backbone or is damaged"
        ) from exc
