"""`histoquery train` end to end on a small copy of the shipped sample."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cli.main import main
from training.checkpoint import load_checkpoint


def test_cli_train_overrides_resume_and_errors(
    tmp_path: Path, sample_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HISTOQUERY_HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    shutil.copytree(sample_dir / "07_ADIPOSE", data / "a")
    (data / "a" / "broken.png").write_text("nope")
    out = tmp_path / "ck" / "enc.pt"
    args = ["train", str(data), "--preset", "fast-cpu", "--epochs", "1", "--image-size", "32", "--batch-size", "4",
            "--set", "projection_dim=16", "--set", "hidden_dim=32", "--set", "aug.hue=0.05",
            "--set", "view2.solarize_prob=0", "--out", str(out), "--no-progress", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "broken.png" in text and "epoch   1" in text and str(out) in text
    cfg = load_checkpoint(out)["config"]
    assert cfg["image_size"] == 32 and cfg["projection_dim"] == 16 and cfg["preset"] == "fast-cpu"
    assert cfg["view1"]["hue"] == 0.05 and cfg["view2"]["solarize_prob"] == 0 and cfg["view2"]["blur_prob"] == 0.1
    # resume takes the checkpoint's config; only the epoch count changes
    assert main(["train", str(data), "--resume", "--epochs", "2", "--out", str(out), "--no-progress"]) == 0
    assert load_checkpoint(out)["epoch"] == 2
    capsys.readouterr()
    # user errors: one line, exit code 2
    assert main(["train", str(tmp_path / "nowhere"), "--preset", "fast-cpu", "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", str(data), "--set", "no_such_field=1", "--out", str(tmp_path / "z.pt")]) == 2
    assert "unknown config field" in capsys.readouterr().err
    # a budget of no time is a typo, not a one-step run (planted: accepted, training starts)
    assert main(["train", str(data), "--minutes", "-5", "--out", str(tmp_path / "m.pt")]) == 2
    assert "--minutes must be a positive number of minutes, got -5" in capsys.readouterr().err
    assert main(["train", str(data), "--resume", "--out", str(tmp_path / "none.pt")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["train", str(data), "--keep-best", "--out", str(tmp_path / "kb.pt"), "--no-progress"]) == 2
    assert "needs a labeled probe" in capsys.readouterr().err
    # --keep-best with a probe names the kept epoch's file (planted: the flag not passed to train() prints no line)
    assert main([*args[:-5], "--out", str(tmp_path / "kb.pt"), "--labeled", str(sample_dir), "--keep-best",
                 "--set", "probe_pairs=40", "--no-progress", "--device", "cpu"]) == 0  # fmt: skip
    assert f"best:       {tmp_path / 'kb.best.pt'} (epoch 1, probe AUC" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "kb.best.pt")["epoch"] == 1


def test_cli_backbone_choices_are_the_registered_backbones() -> None:
    """Planted bug: a backbone added to ``BACKBONES`` but not to the CLI's list (``--backbone resnet18-nopool``
    refused) fails it."""
    from cli.train import BACKBONE_NAMES
    from training.backbones import BACKBONES

    assert sorted(BACKBONE_NAMES) == sorted(BACKBONES)


def test_cli_representation_and_preset_lists_are_the_registered_ones() -> None:
    """Planted bugs: ``texture`` added to ``Representation`` but not to the CLI's choices, or a preset registered
    but missing from the ``--preset`` help, fail it."""
    from typing import get_args

    from cli.train import PRESET_NAMES, REPRESENTATIONS
    from training.config import Representation
    from training.presets import PRESETS

    assert sorted(REPRESENTATIONS) == sorted(get_args(Representation))
    assert sorted(PRESET_NAMES.replace(" or ", ", ").split(", ")) == sorted(PRESETS)
