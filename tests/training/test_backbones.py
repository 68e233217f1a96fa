"""Backbones: output sizes, initialisation from a local torchvision state_dict, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision import models

from training.backbones import backbone_dim, build_backbone
from training.errors import CheckpointError, ConfigError


def test_resnet18_pooled_features_and_unknown_name() -> None:
    net = build_backbone("resnet18").eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 3, 32, 32)).shape == (2, backbone_dim("resnet18")) == (2, 512)
    assert backbone_dim("resnext50_32x4d") == backbone_dim("resnext101_32x8d") == 2048
    with pytest.raises(ConfigError, match="unknown backbone 'vgg16'"):
        build_backbone("vgg16")


def test_small_input_stem_keeps_twice_the_resolution(tmp_path: Path) -> None:
    """``resnet18-nopool`` drops only the stem's max-pool: its layer-4 map is twice as wide as ``resnet18``'s, and
    torchvision resnet18 weights load into it. Planted bug: registering plain ``models.resnet18`` under the name."""
    sizes: dict[str, tuple[int, ...]] = {}
    for name in ("resnet18", "resnet18-nopool"):
        net = build_backbone(name).eval()
        net.layer4.register_forward_hook(lambda _m, _i, out, n=name: sizes.__setitem__(n, tuple(out.shape[2:])))
        with torch.no_grad():
            assert net(torch.zeros(1, 3, 64, 64)).shape == (1, backbone_dim(name)) == (1, 512)
    assert sizes == {"resnet18": (2, 2), "resnet18-nopool": (4, 4)}
    path = tmp_path / "resnet18.pth"
    torch.save(models.resnet18(weights=None).state_dict(), path)
    build_backbone("resnet18-nopool", path)  # same parameters: loads strictly


def test_init_from_local_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(5)
    ref = models.resnet18(weights=None)  # stands in for ImageNet weights the user downloaded
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)  # includes fc.*, which is ignored
    net = build_backbone("resnet18", path)
    for k, v in net.state_dict().items():
        assert torch.equal(v, ref.state_dict()[k])
    wrong = tmp_path / "resnet50.pth"
    torch.save(models.resnet50(weights=None).state_dict(), wrong)
    with pytest.raises(CheckpointError, match="do not fit resnet18"):
        build_backbone("resnet18", wrong)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="cannot read backbone weights"):
        build_backbone("resnet18", junk)
    with pytest.raises(CheckpointError, match="does not exist"):
        build_backbone("resnet18", tmp_path / "nope.pth")
