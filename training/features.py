"""Eval-mode outputs of the online network during training: the probe embedder, the feature-centring means and the
fitted ``texture`` read-out (:mod:`training.readout`).

Both use exactly the :class:`training.encoder.Encoder` transform (resize + centre crop, ImageNet normalisation,
bf16 autocast on CUDA) so that per-epoch probe numbers describe the checkpoint that is saved.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from training.byol import BYOL
from training.config import TrainConfig
from training.data import load_uint8
from training.preprocess import normalize_batch, uint8_to_float
from training.readout import TextureHead, fit_state


def online_outputs(model: BYOL, batch: torch.Tensor, config: TrainConfig, device: torch.device
                    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``(features, projections)`` (float32) of a uint8 batch, online network in eval mode, eval transform."""
    model.eval()
    cuda = device.type == "cuda"
    x = normalize_batch(uint8_to_float(batch.to(device)))
    if cuda and config.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and config.amp):
        feats = model.online_encoder(x)
        proj = model.online_projector(feats)
    return feats.float(), proj.float()


def needs_fit_images(config: TrainConfig) -> bool:
    """Whether the checkpoint holds something fitted on training images (centring means, the texture read-out)."""
    return bool(config.center_features) or config.representation == "texture"


def texture_state(model: BYOL, config: TrainConfig, images: np.ndarray, device: torch.device
                  ) -> dict[str, dict[str, torch.Tensor]]:  # fmt: skip
    """``{"texture_readout": state}`` fitted on the given unlabeled uint8 images (the Encoder's eval transform)."""
    state = fit_state(
        model.online_encoder, images, config.texture_components, config.texture_clusters, config.seed, device,
        lambda u: normalize_batch(uint8_to_float(u)),
    )  # fmt: skip
    return {"texture_readout": state}


def center_subset(files: list[Path], config: TrainConfig) -> np.ndarray:
    """Decode (once) up to ``center_samples`` evenly spaced training images: ``(N, 3, S, S)`` uint8."""
    step = max(1, len(files) // max(1, config.center_samples))
    images, _ = load_uint8(files[::step][: config.center_samples], config.eval_size)
    return images


def feature_means(model: BYOL, config: TrainConfig, images: np.ndarray, device: torch.device
                  ) -> dict[str, torch.Tensor]:  # fmt: skip
    """Mean backbone feature and projection (float32, CPU) of the given ``(N, 3, S, S)`` uint8 images."""
    sums: dict[str, torch.Tensor] = {}
    for start in range(0, len(images), 256):
        feats, proj = online_outputs(model, torch.from_numpy(images[start : start + 256]), config, device)
        for key, value in (("feature_mean", feats), ("projection_mean", proj)):
            sums[key] = sums.get(key, 0) + value.sum(dim=0).cpu()
    return {k: v / max(1, len(images)) for k, v in sums.items()}


def embedder(model: BYOL, config: TrainConfig, device: torch.device, centers: dict[str, Any] | None
              ) -> Callable[[np.ndarray], np.ndarray]:  # fmt: skip
    """Embed uint8 batches with the online network exactly as :class:`Encoder` will (incl. centring, or the fitted
    texture read-out in ``centers["texture_readout"]``)."""
    if config.representation == "texture":
        head = TextureHead(model.online_encoder, (centers or {})["texture_readout"]).to(device)

        def embed_texture(batch: np.ndarray) -> np.ndarray:
            model.eval()
            cuda = device.type == "cuda"
            x = normalize_batch(uint8_to_float(torch.from_numpy(batch).to(device)))
            if cuda and config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and config.amp):
                return F.normalize(head(x).float(), dim=1).cpu().numpy()

        return embed_texture

    def embed(batch: np.ndarray) -> np.ndarray:
        feats, proj = online_outputs(model, torch.from_numpy(batch), config, device)
        key, z = ("projection_mean", proj) if config.representation == "projection" else ("feature_mean", feats)
        z = z.cpu()
        if centers and key in centers:
            z = z - centers[key]
        return F.normalize(z, dim=1).numpy()

    return embed
