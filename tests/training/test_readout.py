"""The ``texture`` read-out (training/readout.py): what it separates, that the Encoder reproduces it from the
checkpoint exactly, and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.checkpoint import load_checkpoint
from training.encoder import Encoder
from training.errors import CheckpointError, DataError
from training.probe import roc_auc
from training.readout import TextureHead, descriptors, fit

from .conftest import tiny_config


def _clustered(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Three types apart along 2 axes, plus as much type-free spread (stain, brightness) over 24 other axes."""
    labels = rng.integers(0, 3, n)
    centres = np.array([[0.0, 0.0], [2.2, 0.0], [1.1, 1.9]])
    x = np.zeros((n, 40))
    x[:, :2] = centres[labels] + rng.normal(0, 0.35, (n, 2))
    x[:, 2:26] = rng.normal(0, 0.7, (n, 24))
    return x + 5.0, labels


def _pair_auc(v: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> float:
    i, j = rng.integers(0, len(v), 4000), rng.integers(0, len(v), 4000)
    keep = i != j
    i, j = i[keep], j[keep]
    return roc_auc((v[i] * v[j]).sum(1), labels[i] == labels[j])


def test_discriminant_axes_separate_types_the_principal_axes_dilute() -> None:
    """Fitted without labels, the vector's discriminant half ranks held-out same-type pairs far better than its
    principal half, where the type-free spread dilutes the cosine. Planted bugs that fail it: the head ignoring
    the LDA axes (principal half only), or LDA fitted to random cluster assignments instead of k-means'."""
    rng = np.random.default_rng(0)
    train, _ = _clustered(600, rng)
    test, labels = _clustered(1500, rng)
    state = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in fit(train, 16, 5, seed=0).items()}
    state["stage1_projection"] = torch.zeros(0)
    head = TextureHead(torch.nn.Identity(), state)
    out = head.project(torch.as_tensor(test, dtype=torch.float32)).numpy()
    n_lda = head.lda_axes.shape[1]
    assert n_lda == 4 and head.dim == 16 + 4
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    auc_lda = _pair_auc(out[:, :n_lda] / np.linalg.norm(out[:, :n_lda], axis=1, keepdims=True), labels, rng)
    auc_pc = _pair_auc(out[:, n_lda:] / np.linalg.norm(out[:, n_lda:], axis=1, keepdims=True), labels, rng)
    auc_all = _pair_auc(out, labels, rng)
    assert auc_lda >= auc_pc + 0.1, (auc_lda, auc_pc)
    assert auc_all >= auc_pc + 0.1, (auc_all, auc_pc)


def test_too_few_images_is_a_clear_error_and_few_images_shrink_the_clusters() -> None:
    rng = np.random.default_rng(1)
    with pytest.raises(DataError, match="at least 3 training images"):
        fit(rng.normal(size=(2, 10)), 8, 5, seed=0)
    small = fit(rng.normal(size=(4, 10)), 8, 5, seed=0)
    assert small["lda_axes"].shape[1] <= 2  # at most 3 clusters of 4 images


@pytest.fixture(scope="module")
def texture_run(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    from training.trainer import train

    out = tmp_path_factory.mktemp("texture_run") / "tex.pt"
    train(sample_dir, tiny_config(representation="texture", texture_components=16, epochs=1), out,
          max_steps_per_epoch=2)  # fmt: skip
    return out


def test_encoder_reproduces_the_fitted_read_out_from_the_checkpoint(texture_run: Path, sample_dir: Path) -> None:
    """The Encoder's vectors equal the read-out recomputed by hand from the checkpoint's online trunk and fitted
    state (numpy, independent of TextureHead). Planted bugs that fail it: loading the target trunk instead of the
    online one, dropping the mean, or a transposed principal basis."""
    enc = Encoder.from_checkpoint(texture_run, device="cpu")
    payload = load_checkpoint(texture_run)
    fitted = payload["texture_readout"]
    assert enc.representation == "texture" and enc.dim == 16 + fitted["lda_axes"].shape[1]
    images = [Image.open(p).convert("RGB") for p in [p for p in sorted(sample_dir.rglob("*")) if p.is_file()][:6]]
    got = enc.embed(images)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)

    from training.backbones import build_backbone
    from training.preprocess import normalize_batch, uint8_to_float

    trunk = build_backbone("resnet18").eval()
    trunk.load_state_dict(payload["state"]["online_encoder"])
    batch = torch.from_numpy(np.stack([enc.preprocess(im) for im in images]))
    with torch.inference_mode():
        d = descriptors(trunk, normalize_batch(uint8_to_float(batch)), None).numpy().astype(np.float64)
    coords = (d - fitted["mean"].numpy()) @ fitted["components"].numpy().T
    lda = coords @ fitted["lda_axes"].numpy()

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    want = np.hstack([unit(lda), unit(coords)]) / np.sqrt(2)
    np.testing.assert_allclose(got, want, atol=2e-4)
    # a different image gives a different vector (the read-out is not constant)
    assert float(np.abs(got[0] - got[1]).max()) > 1e-3


def test_a_checkpoint_without_the_fitted_read_out_is_refused(tiny_run: tuple[Path, object]) -> None:
    with pytest.raises(CheckpointError, match="no fitted texture read-out"):
        Encoder.from_checkpoint(tiny_run[0], device="cpu", representation="texture")


def test_the_untrained_twin_gets_its_own_fitted_read_out(tmp_path: Path, sample_dir: Path) -> None:
    """The floor every quality benchmark reports must be read out the same way as the trained encoder."""
    from training.trainer import write_untrained

    out = write_untrained(sample_dir, tiny_config(representation="texture", texture_components=8), tmp_path / "u.pt")
    enc = Encoder.from_checkpoint(out, device="cpu")
    assert enc.representation == "texture" and enc.dim >= 8 + 1


def test_wide_first_stages_are_projected_to_a_fixed_orthonormal_basis() -> None:
    """ResNet-50 / ResNeXt's layer 1 has 256 channels: its covariance is taken on 64 fixed random orthonormal
    projections (the same for every call with that seed), so every backbone gives a 4,160-d descriptor. Planted
    bugs that fail it: no projection (a 256-channel covariance, 32,896 numbers), or a projection redrawn per call."""
    from training.backbones import build_backbone
    from training.readout import MAX_CHANNELS, fit_state, stage1_projection

    trunk = build_backbone("resnet50").eval()
    p1, p2 = stage1_projection(trunk, seed=3), stage1_projection(trunk, seed=3)
    assert p1 is not None and p2 is not None and p1.shape == (MAX_CHANNELS, 256)
    torch.testing.assert_close(p1, p2)
    torch.testing.assert_close(p1 @ p1.T, torch.eye(MAX_CHANNELS), atol=1e-5, rtol=0)
    assert stage1_projection(build_backbone("resnet18"), seed=3) is None  # 64 channels: kept as they are
    images = np.random.default_rng(0).integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    with torch.inference_mode():
        d = descriptors(trunk, torch.from_numpy(images).float() / 255, p1)
    assert d.shape == (6, 2 * MAX_CHANNELS * (MAX_CHANNELS + 1) // 2)
    state = fit_state(trunk, images, 4, 3, 3, torch.device("cpu"), lambda u: u.float() / 255)
    torch.testing.assert_close(state["stage1_projection"], p1)
    head = TextureHead(trunk, state).eval()
    with torch.inference_mode():
        out = head(torch.from_numpy(images).float() / 255)
    assert out.shape == (6, head.dim) and head.dim == 4 + 2


def test_second_order_statistics_stay_float32_under_bf16_autocast() -> None:
    """The Encoder embeds under bf16 autocast on CUDA; covariances and their projections must not be computed in
    bf16 (8 bits of mantissa). Checked with the CPU's bf16 autocast. Planted bug that fails it: dropping the
    ``autocast(enabled=False)`` guard in ``channel_products`` (the matmul then runs in bf16, errors ~1e-2)."""
    from training.readout import channel_products

    maps = torch.randn(4, 64, 12, 12, generator=torch.Generator().manual_seed(0)) + 0.5
    want = channel_products(maps)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = channel_products(maps)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_too_small_a_folder_is_refused_before_training(tmp_path: Path, sample_dir: Path) -> None:
    """Two images cannot fit the read-out: the user hears it before any training step, with the folder named.
    Planted bug that fails it: no check in ``train`` (the fit fails after training, naming no folder)."""
    from training.trainer import train

    folder = tmp_path / "two"
    folder.mkdir()
    for p in [p for p in sorted(sample_dir.rglob("*")) if p.is_file()][:2]:
        (folder / p.name).write_bytes(p.read_bytes())
    steps: list[int] = []
    with pytest.raises(DataError, match=rf"{folder}: 2 image\(s\).*--representation backbone"):
        train(folder, tiny_config(representation="texture"), tmp_path / "t.pt",
              progress=lambda step, total, info: steps.append(step))  # fmt: skip
    assert steps == [] and not (tmp_path / "t.pt").exists()
