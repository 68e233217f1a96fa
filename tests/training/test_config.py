"""TrainConfig: normalised once at construction; ``validate`` only checks."""

from __future__ import annotations

import pytest

from training.augment import ViewTransform
from training.config import TrainConfig
from training.errors import ConfigError


def test_construction_normalises_the_views() -> None:
    cfg = TrainConfig(image_size=64)
    assert cfg.view1.output_size == cfg.view2.output_size == 64
    again = TrainConfig.from_dict(cfg.to_dict())  # stored configs hold the views as dicts
    assert isinstance(again.view1, ViewTransform) and again == cfg


def test_validate_checks_without_changing_the_config() -> None:
    """Planted bug: ``validate`` resizing the views itself (the old behaviour) passes a bad config silently here."""
    cfg = TrainConfig(image_size=64)
    cfg.image_size = 96  # edited after construction: the views still make 64 px crops
    before = cfg.to_dict()
    with pytest.raises(ConfigError, match="view1.output_size is 64 but image_size is 96"):
        cfg.validate()
    assert cfg.to_dict() == before
