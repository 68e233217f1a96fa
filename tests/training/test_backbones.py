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
