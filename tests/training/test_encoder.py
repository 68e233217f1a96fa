"""Encoder: checkpoint round trip, L2 norm, batch-size independence, bad checkpoints, make_untrained_checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.checkpoint import load_checkpoint
from training.encoder import Encoder
from training.errors import CheckpointError, InputError
from training.testing import make_untrained_checkpoint


@pytest.fixture(scope="module")
def images(sample_dir: Path) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted(sample_dir.rglob("*"))[::6] if p.is_file()]


def test_round_trip_identical_embeddings(tiny_run: tuple[Path, object], images: list[Image.Image]) -> None:
    out, _ = tiny_run
    a = Encoder.from_checkpoint(out, device="cpu")
    b = Encoder.from_checkpoint(out, device="cpu")
    assert a.backbone == "resnet18" and a.dim == 512 and a.image_size == 32 and a.representation == "backbone"
    assert a.checkpoint_sha256 == b.checkpoint_sha256 and len(a.checkpoint_sha256) == 64
    np.testing.assert_array_equal(a.embed(images), b.embed(images))
    # the encoder is the trained online network, not a fresh one
    trunk_state = load_checkpoint(out)["state"]["online_encoder"]
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, trunk_state[k])


def test_output_normalised_and_batch_size_independent(tiny_run: tuple[Path, object],
                                                      images: list[Image.Image]) -> None:  # fmt: skip
    enc = Encoder.from_checkpoint(tiny_run[0], device="cpu")
    full = enc.embed(images, batch_size=len(images))
    assert full.dtype == np.float32 and full.shape == (len(images), 512)
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1.0, atol=1e-5)
    for bs in (1, 3):
        np.testing.assert_allclose(enc.embed(images, batch_size=bs), full, atol=1e-5)
    # embed == preprocess + embed_uint8, mixed input sizes handled by the eval transform
    batch = np.stack([enc.preprocess(im) for im in images])
    assert batch.dtype == np.uint8 and batch.shape[1:] == (3, 32, 32)
    np.testing.assert_allclose(enc.embed_uint8(torch.from_numpy(batch)), full, atol=1e-5)
    assert enc.embed([]).shape == (0, 512)


def test_projection_representation(tiny_run: tuple[Path, object], images: list[Image.Image]) -> None:
    enc = Encoder.from_checkpoint(tiny_run[0], device="cpu", representation="projection")
    out = enc.embed(images[:3])
    assert enc.dim == 32 and out.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_wrong_shape_is_input_error(tiny_run: tuple[Path, object]) -> None:
    enc = Encoder.from_checkpoint(tiny_run[0], device="cpu")
    with pytest.raises(InputError, match=r"\(B, 3, 32, 32\)"):
        enc.embed_uint8(np.zeros((2, 3, 64, 64), dtype=np.uint8))
    with pytest.raises(InputError):
        enc.embed_uint8(np.zeros((2, 3, 32, 32), dtype=np.float32))


def test_untrained_checkpoint_is_loadable_and_deterministic(tmp_path: Path, images: list[Image.Image]) -> None:
    p1 = make_untrained_checkpoint(tmp_path / "a.pt", seed=3)
    p2 = make_untrained_checkpoint(tmp_path / "sub" / "b.pt", seed=3)
    e1, e2 = Encoder.from_checkpoint(p1, "cpu"), Encoder.from_checkpoint(p2, "cpu")
    assert e1.checkpoint_sha256 == e2.checkpoint_sha256 and e1.dim == 512 and e1.image_size == 64
    np.testing.assert_array_equal(e1.embed(images[:4]), e2.embed(images[:4]))
    e3 = Encoder.from_checkpoint(make_untrained_checkpoint(tmp_path / "c.pt", seed=4), "cpu")
    assert not np.allclose(e1.embed(images[:4]), e3.embed(images[:4]))
    assert load_checkpoint(p1)["format_version"] == 1


def test_corrupt_truncated_and_foreign_checkpoints(tmp_path: Path, tiny_run: tuple[Path, object]) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        Encoder.from_checkpoint(corrupt)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_run[0].read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="corrupt"):
        Encoder.from_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="does not exist"):
        Encoder.from_checkpoint(tmp_path / "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a HistoQuery"):
        Encoder.from_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="not resnext50_32x4d"):
        Encoder.from_checkpoint(tiny_run[0], backbone="resnext50_32x4d")


def test_checkpoint_with_other_backbone_weights_is_clear_error(tmp_path: Path, tiny_run: tuple[Path, object]) -> None:
    payload = load_checkpoint(tiny_run[0])
    payload["config"]["backbone"] = "resnet50"  # claims resnet50, holds resnet18 weights
    bad = tmp_path / "mismatch.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match="do not fit a resnet50"):
        Encoder.from_checkpoint(bad)


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"format": "histoquery-byol", "obj": Path("/etc/passwd")}, evil)
    with pytest.raises(CheckpointError):
        Encoder.from_checkpoint(evil)


def test_feature_centring_is_stored_and_applied(tmp_path: Path, sample_dir: Path, images: list[Image.Image]) -> None:
    from tests.training.conftest import tiny_config
    from training.preprocess import normalize_batch
    from training.trainer import train

    out = tmp_path / "centred.pt"
    result = train(sample_dir, tiny_config(epochs=1, center_features=True), out, labeled=sample_dir,
                   max_steps_per_epoch=1)  # fmt: skip
    payload = load_checkpoint(out)
    mean = payload["feature_mean"]
    assert mean.shape == (512,) and payload["projection_mean"].shape == (32,)
    enc = Encoder.from_checkpoint(out, "cpu")
    plain = Encoder.from_checkpoint(out, "cpu")
    plain.model = plain.model.model  # type: ignore[assignment]  # unwrap: the raw online trunk
    x = np.stack([enc.preprocess(im) for im in images])
    raw = torch.from_numpy(plain.embed_uint8(x))  # normalised raw features
    centred = enc.embed_uint8(x)
    np.testing.assert_allclose(np.linalg.norm(centred, axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        feats = plain.model(normalize_batch(torch.from_numpy(x).float() / 255))
    expected = torch.nn.functional.normalize(feats - mean, dim=1).numpy()
    np.testing.assert_allclose(centred, expected, atol=1e-5)
    # centring spreads the vectors: lower mean pairwise cosine than the raw (all-positive ReLU) features
    assert float((centred @ centred.T).mean()) < float((raw @ raw.T).mean())
    assert "probe_pair_acc" in result.metrics[0]
