"""Exception hierarchy of the ingest package.

Every error names the file (or manifest row) it is about and says how to fix it. The CLI prints any
:class:`IngestError` as one line with exit code 2.
"""

from __future__ import annotations

import functools

from retrieval.errors import RetrievalError
from training.errors import TrainingError


class IngestError(Exception):
    """Base class of every ingest error (user-facing: printed without a traceback)."""


#: The error hierarchies whose messages are the user's to fix (each says how): the CLI prints them as one line
#: (exit code 2) and the dashboard as one message, never a traceback. Their one list: each front end adds its own
#: (``cli.main.CLIError``, ``dashboard.ui.UploadError``). Here because ingest may import the two packages below it.
USER_ERRORS: tuple[type[Exception], ...] = (TrainingError, RetrievalError, IngestError)


class PathNotAllowedError(IngestError):
    """A path resolves outside the configured allowed roots."""


class SourceError(IngestError):
    """A source (folder, file list) cannot be enumerated: missing path, unreadable folder, nothing to ingest."""


class ManifestError(SourceError):
    """A manifest CSV is malformed: missing columns or bad rows (every bad row is listed)."""


class BadImageError(IngestError):
    """A single input image cannot be used; permanent (never retried).

    Attributes:
        path: the offending file.
        reason: a short human reason ("zero-byte file", "truncated image data", ...).
        stage: the pipeline stage that rejected it ('read', 'decode' or 'validate').
    """

    def __init__(self, path: object, reason: str, stage: str = "decode") -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
        self.stage = stage


class SlideError(IngestError):
    """A whole-slide image cannot be opened or tiled (unsupported format, no tissue, bad tiling parameters).

    Attributes:
        path: the slide file.
        reason: a short human reason.
        stage: 'read' (cannot open) or 'tile' (opened but produced no usable tiles).
    """

    def __init__(self, path: object, reason: str, stage: str = "tile") -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
        self.stage = stage


class JobNotFoundError(IngestError):
    """No ingestion job with the given id."""


class TransientError(IngestError):
    """A temporary failure (broker, database or vector store unavailable): the task is retried with back-off."""


@functools.cache
def transient_errors() -> tuple[type[BaseException], ...]:
    """The error types that mean "a service is unavailable right now": retry the batch with back-off.

    Their one home, used by the runner (embedded retries), the Celery task (``autoretry_for``) and the service
    (a job that stays unavailable fails as a whole). A function, not a constant, so that importing this module to
    catch :class:`IngestError` (the CLI) does not import the database, broker and vector-store clients.
    """
    from qdrant_client.http.exceptions import ResponseHandlingException
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

    # redis and qdrant-client are hard dependencies: their connection errors are transient too.
    return (
        TransientError,
        OperationalError,
        InterfaceError,
        DisconnectionError,
        ConnectionError,
        TimeoutError,
        RedisConnectionError,
        RedisTimeoutError,
        ResponseHandlingException,
    )
