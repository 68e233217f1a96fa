"""The one path normaliser: what ingestion stores as ``images.source_path`` and what queries look up.

Both sides call :func:`normalise_path`: ``~`` expanded, made absolute, symlinks and ``..`` resolved. A stored file
reached through a symlink (or a relative path, or ``..``) is therefore found, not embedded again.
"""

from __future__ import annotations

import os
from pathlib import Path

from retrieval.errors import RetrievalError


class PathError(RetrievalError, ValueError):
    """A path that no file can have (e.g. it contains a NUL byte)."""


def normalise_path(path: str | Path) -> str:
    """The canonical form of a file path: absolute, ``~`` expanded, symlinks and ``..`` resolved.

    Args:
        path: any path (relative, with ``..``, through symlinks; the file need not exist).

    Returns:
        The canonical absolute path as a string.

    Raises:
        PathError: the path contains a NUL byte.
    """
    text = os.fspath(path)
    if "\x00" in text:
        raise PathError(f"{text!r}: a path cannot contain a NUL byte")
    return str(Path(os.path.expanduser(text)).resolve())


def legacy_path(path: str | Path) -> str:
    """The form older versions stored (absolute, symlinks *not* resolved): looked up as well, for old rows."""
    return str(Path(os.path.expanduser(os.fspath(path))).absolute())
