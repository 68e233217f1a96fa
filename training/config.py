"""Training configuration: one typed dataclass, JSON-able, with presets and ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from training.augment import ViewTransform
from training.backbones import BACKBONES
from training.errors import ConfigError

Optimizer = Literal["sgd", "adamw", "lars"]
Schedule = Literal["constant", "cosine"]
Representation = Literal["backbone", "projection", "texture"]


@dataclass
class TrainConfig:
    """Everything a BYOL run depends on; stored in the checkpoint. Defaults = the ``paper`` preset's values.

    ``view1`` / ``view2`` hold the augmentation knobs of each view (their ``output_size`` follows ``image_size``).
    """

    backbone: str = "resnext101_32x8d"
    backbone_weights: str | None = None
    representation: Representation = "backbone"
    image_size: int = 224
    load_size: int | None = None  # decode size on the CPU workers; None = image_size
    embed_size: int | None = None  # side the Encoder embeds whole images at; None = image_size (see eval_size)
    projection_dim: int = 512
    hidden_dim: int = 2048
    epochs: int = 30
    # a run of this many optimiser steps instead of ``epochs`` (which then follows from the folder's size: the last
    # epoch is cut short), so that a preset's training time does not grow with the collection; None = ``epochs``
    train_steps: int | None = None
    batch_size: int = 32
    optimizer: Optimizer = "sgd"
    lr: float = 3e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: Schedule = "constant"
    warmup_epochs: float = 0.0
    ema_rate: float = 0.99
    ema_schedule: Schedule = "constant"
    view1: ViewTransform = field(default_factory=lambda: ViewTransform(blur_prob=1.0, solarize_prob=0.0))
    view2: ViewTransform = field(default_factory=lambda: ViewTransform(blur_prob=0.1, solarize_prob=0.2))
    seed: int = 0
    device: str = "auto"
    num_workers: int | None = None  # None = min(8, CPU count) on CUDA, 0 on CPU
    # with num_workers 0 (a CPU run): decoded training images kept in memory across epochs, up to this many MB of
    # pixels (~150 KB per 224 px image: 1,024 MB hold ~7,000), so that each is decoded once, not every epoch; 0 = off
    decode_cache_mb: int = 1024
    amp: bool = True  # bf16 autocast on CUDA
    channels_last: bool = True  # the training step in channels_last (on CUDA, and on a CPU: 1.10-1.13x float32)
    # on a CPU with native bf16 (AVX512-BF16 / AMX): the training step under bf16 autocast, in channels_last
    # (1.84x the float32 step for cpu-crops, BENCHMARKS.md); float32 on other CPUs, where emulated bf16 is slower.
    # Embedding (probe, centring, ingestion) stays float32 on the CPU either way
    cpu_bf16: bool = False
    center_features: bool = False  # Encoder subtracts the training-set mean vector before L2 normalisation
    center_samples: int = 1024  # training images (decoded once, kept in memory) used to estimate that mean
    # (and to fit the texture read-out)
    texture_components: int = 64  # representation "texture": principal axes kept (training/readout.py)
    texture_clusters: int = 5  # representation "texture": k-means clusters whose LDA axes the vector also holds
    collapse_warn: float = 0.1  # warn when std(normalised z) * sqrt(d) falls below this
    probe_pairs: int = 1000
    probe_knn_k: int = 5
    preset: str = "paper"

    def __post_init__(self) -> None:
        self._normalise()
        self.validate()

    def _normalise(self) -> None:
        """Bring the views into their one form: :class:`ViewTransform` objects (a stored config holds dicts) whose
        ``output_size`` is ``image_size`` (the views always produce training-size crops).

        Done once, at construction: :meth:`validate` only checks, so calling it never changes a config.
        """
        for v in ("view1", "view2"):
            view = getattr(self, v)
            if isinstance(view, dict):
                view = _view_from_dict(view)
            if isinstance(view, ViewTransform) and view.output_size != self.image_size:
                view = dataclasses.replace(view, output_size=self.image_size)
            setattr(self, v, view)

    def validate(self) -> None:
        """Raise :class:`ConfigError` on an invalid value (message names the field); never changes the config."""
        if self.backbone not in BACKBONES:
            raise ConfigError(f"backbone {self.backbone!r} unknown: choose one of {', '.join(sorted(BACKBONES))}")
        for name in ("image_size", "projection_dim", "hidden_dim", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_steps is not None and int(self.train_steps) < 1:
            raise ConfigError(f"train_steps must be >= 1 (or none), got {self.train_steps}")
        if int(self.texture_components) < 1:
            raise ConfigError(f"texture_components must be >= 1, got {self.texture_components}")
        if int(self.texture_clusters) < 2:
            raise ConfigError(f"texture_clusters must be >= 2 (two groups to separate), got {self.texture_clusters}")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be >= 2 (batch-norm in the projector needs two samples)")
        if self.image_size < 16:
            raise ConfigError(f"image_size must be >= 16, got {self.image_size}")
        for name in ("load_size", "embed_size"):
            value = getattr(self, name)
            if value is not None and int(value) < 16:
                raise ConfigError(f"{name} must be >= 16 (or none), got {value}")
        for name, allowed in (
            ("optimizer", get_args(Optimizer)),
            ("lr_schedule", get_args(Schedule)),
            ("ema_schedule", get_args(Schedule)),
            ("representation", get_args(Representation)),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not 0.0 <= self.ema_rate <= 1.0:
            raise ConfigError(f"ema_rate must be in [0, 1], got {self.ema_rate}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        for v in ("view1", "view2"):
            view = getattr(self, v)
            if not isinstance(view, ViewTransform):
                raise ConfigError(f"{v} must be a training.augment.ViewTransform, got {type(view).__name__}")
            if view.output_size != self.image_size:
                raise ConfigError(
                    f"{v}.output_size is {view.output_size} but image_size is {self.image_size}: the views produce "
                    "training-size crops (build a new TrainConfig, or use with_overrides, instead of editing fields)"
                )

    @property
    def eval_size(self) -> int:
        """Side of the whole images the trained encoder embeds (probe, centring, ingestion, queries).

        The backbone is fully convolutional with global pooling, so a model trained on small crops (``image_size``)
        can embed whole tiles at their native resolution (``embed_size``).
        """
        return int(self.embed_size or self.image_size)

    @property
    def decode_size(self) -> int:
        """Side of the uint8 images the CPU workers produce."""
        return int(self.load_size or self.image_size)

    def planned_steps(self, steps_per_epoch: int) -> tuple[int, int]:
        """``(epochs, optimiser steps)`` of a run whose epochs hold ``steps_per_epoch`` steps: ``train_steps`` when
        set (epochs rounded up, the last one cut short), otherwise ``epochs`` whole epochs."""
        if self.train_steps is None:
            return int(self.epochs), int(self.epochs) * steps_per_epoch
        steps = int(self.train_steps)
        return -(-steps // max(1, steps_per_epoch)), steps

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        values = dict(data)
        for v in ("view1", "view2"):
            if isinstance(values.get(v), dict):
                values[v] = _view_from_dict(values[v])
        return cls(**values)

    def with_overrides(self, overrides: dict[str, Any]) -> TrainConfig:
        """A copy with fields replaced. Keys: ``field``, ``view1.knob``, ``view2.knob`` or ``aug.knob`` (both views).

        String values (from the CLI) are parsed to the field's type.
        """
        data = self.to_dict()
        if "epochs" in overrides and "train_steps" not in overrides:
            data["train_steps"] = None  # an explicit epoch count replaces a preset's step budget
        for key, raw in overrides.items():
            if key.startswith(("view1.", "view2.", "aug.")):
                prefix, knob = key.split(".", 1)
                targets = ("view1", "view2") if prefix == "aug" else (prefix,)
                for t in targets:
                    if knob not in data[t]:
                        raise ConfigError(f"unknown augmentation knob {knob!r}: see training.augment.ViewTransform")
                    data[t][knob] = _parse_like(raw, data[t][knob], key)
            elif key in data and key not in ("view1", "view2"):
                data[key] = _parse_like(raw, data[key], key, field_name=key)
            else:
                raise ConfigError(f"unknown config field {key!r}: see `histoquery train --help` or docs/training.md")
        return TrainConfig.from_dict(data)


_NULLABLE_INT = {"load_size", "embed_size", "num_workers", "train_steps"}
_NULLABLE_STR = {"backbone_weights"}


def _parse_like(raw: Any, current: Any, key: str, field_name: str | None = None) -> Any:
    """Parse ``raw`` (usually a CLI string) to the type of ``current``."""
    if not isinstance(raw, str):
        return raw
    try:
        if raw.lower() in ("none", "null") and (field_name in _NULLABLE_INT | _NULLABLE_STR or current is None):
            return None
        if field_name in _NULLABLE_INT:
            return int(raw)
        if isinstance(current, bool):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes")
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        if isinstance(current, list):
            return [float(p) for p in raw.split(",")]
    except ValueError as exc:
        expected = "a whole number or none" if field_name in _NULLABLE_INT else type(current).__name__
        raise ConfigError(f"bad value {raw!r} for {key} (expected {expected})") from exc
    return raw


def _view_from_dict(data: dict[str, Any]) -> ViewTransform:
    known = {f.name for f in fields(ViewTransform)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown augmentation knob(s): {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return ViewTransform(**values)
