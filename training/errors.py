"""Exceptions of the training package: one base class, each message says how to fix the problem."""

from __future__ import annotations


class TrainingError(Exception):
    """Base class of every error the training package raises on user input."""


class ConfigError(TrainingError):
    """A training configuration value is invalid (unknown preset, backbone, field or out-of-range value)."""


class CheckpointError(TrainingError):
    """A checkpoint file is missing, corrupt, of another format, or does not match the requested model."""


class DataError(TrainingError):
    """The training data cannot be used: empty folder, no readable image, bad labeled folder or pairs CSV."""


class InputError(TrainingError, ValueError):
    """An input batch has the wrong shape or type for the encoder (message gives the expected shape)."""


class MetricsError(TrainingError, ValueError):
    """Metrics cannot be computed on these scores/labels (empty, NaN, length mismatch, a class missing)."""
