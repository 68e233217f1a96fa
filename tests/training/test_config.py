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


def test_configs_stored_before_cpu_bf16_load_with_it_off() -> None:
    """Checkpoints written before the field existed keep training and embedding in float32; ``cpu-crops`` turns
    it on. Planted bugs: a default of True (old configs change precision), or the field missing from the preset."""
    from training.presets import get_preset

    stored = get_preset("cpu-crops").to_dict()
    assert stored.pop("cpu_bf16") is True
    assert TrainConfig.from_dict(stored).cpu_bf16 is False
    assert get_preset("paper").cpu_bf16 is False and get_preset("fast-cpu").cpu_bf16 is False


def test_train_steps_budget_and_an_explicit_epoch_count() -> None:
    """``cpu-crops-long`` trains a fixed number of steps; ``--epochs N`` (an override of ``epochs`` alone) replaces
    that budget, and stored configs without the field keep their epochs. Planted bugs: rounding the epochs down (the
    last, partial epoch never runs); an epoch override that leaves the step budget in force; a preset that forgot it."""
    from training.presets import get_preset

    long = get_preset("cpu-crops-long")
    assert long.train_steps == 3360 and long.planned_steps(35) == (96, 3360)  # LC25000's side A: 35 steps an epoch
    assert long.planned_steps(70) == (48, 3360) and long.planned_steps(100) == (34, 3360)
    assert long.with_overrides({"epochs": "5"}).planned_steps(35) == (5, 175)
    assert long.with_overrides({"train_steps": "100"}).planned_steps(35) == (3, 100)
    stored = get_preset("cpu-crops").to_dict()
    assert stored.pop("train_steps") is None and TrainConfig.from_dict(stored).planned_steps(35) == (4, 140)
    with pytest.raises(ConfigError, match="train_steps must be >= 1"):
        TrainConfig(train_steps=0)
    # a typo is named in the user's words, not as Python's type of the default (planted: "expected NoneType")
    with pytest.raises(ConfigError, match=r"bad value 'abc' for train_steps \(expected a whole number or none\)"):
        get_preset("cpu-crops").with_overrides({"train_steps": "abc"})
