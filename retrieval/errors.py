"""Exceptions raised by the retrieval package.

Every message names the offending thing (image id, file, CSV row, collection) and says how to fix it. The CLI
prints any :class:`RetrievalError` as one line with exit code 2 (``exit_code`` overrides).
"""

from __future__ import annotations


class RetrievalError(Exception):
    """Base class of every retrieval error (user-fixable problems)."""

    exit_code: int = 2


class SettingsError(RetrievalError):
    """Bad or missing platform settings (database URL, vector backend). Not ``ConfigError``: that name is the
    training package's, for a bad training configuration (``training.errors.ConfigError``)."""


class MigrationError(RetrievalError):
    """The database schema could not be created or upgraded."""


class NoActiveEncoderError(RetrievalError):
    """No encoder version is registered / active."""


class UnknownImageError(RetrievalError):
    """An image id that is not in the database (or not embedded with the encoder version in use)."""


class NotEmbeddedError(UnknownImageError):
    """The image exists but has no vector for the encoder version in use."""


class QueryImageError(RetrievalError):
    """A query image file that cannot be read or decoded, or an array of the wrong shape."""


class EmptyCollectionError(RetrievalError):
    """A query against a collection with no points."""


class ThresholdError(RetrievalError):
    """A decision threshold that is out of range or given in both conventions at once."""


class PairsFileError(RetrievalError):
    """A pairs CSV that cannot be used (missing file, missing columns, no usable rows)."""


class VectorStoreError(RetrievalError):
    """The vector store refused an operation (missing collection, dimension mismatch, backend failure)."""


class StoreBusyError(VectorStoreError):
    """The embedded vector store is held by another process (temporary: ingestion waits and retries)."""


class EvaluationError(RetrievalError):
    """Evaluation / calibration cannot run (too few pairs, one class only, no threshold to evaluate)."""


class CheckpointChangedError(RetrievalError):
    """An encoder version's checkpoint file no longer has the sha256 it was registered with."""
