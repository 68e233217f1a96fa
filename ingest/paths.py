"""Allowed roots: every file a job opens must lie inside one of them (when roots are configured).

:func:`check_allowed` checks the path a user typed (dashboard, CLI). :class:`Roots` checks every file a job opens
after that: folder entries (symlinks included), manifest rows (absolute or ``../``), slide paths, and the stored
paths that thumbnails and re-embedding read again. A refused file always gets the same reason,
:data:`REFUSED`, whether or not something exists at the path, so refusals reveal nothing outside the roots.
Paths are compared in their one canonical form (:func:`retrieval.paths.normalise_path`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ingest.errors import PathNotAllowedError
from retrieval.paths import PathError, normalise_path

#: The single reason given for any file outside the allowed roots.
REFUSED = "outside the allowed roots: refused"


def display_path(path: object) -> str:
    """Any path or text as storable text: the bytes of a non-UTF-8 file name as ``\\xff`` escapes, NUL as ``\\x00``.

    What it returns always encodes to UTF-8 and fits a PostgreSQL ``text`` column (which refuses NUL).
    """
    if isinstance(path, bytes):
        raw = path
    else:
        text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
            raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


class Roots:
    """The allowed roots, resolved once.

    Args:
        roots: root folders. An empty string is refused (it must not mean the current directory).

    Raises:
        PathNotAllowedError: an empty or NUL-containing root.
    """

    def __init__(self, roots: Sequence[str | Path]) -> None:
        resolved = []
        for root in roots:
            text = os.fspath(root)
            if not text.strip():
                raise PathNotAllowedError(
                    "an allowed root is an empty string: give absolute folders (HISTOQUERY_ALLOWED_ROOTS)"
                )
            try:
                resolved.append(Path(normalise_path(text)))
            except PathError as exc:
                raise PathNotAllowedError(str(exc)) from exc
        self.paths: tuple[Path, ...] = tuple(resolved)

    def __bool__(self) -> bool:
        return bool(self.paths)

    def as_strings(self) -> list[str]:
        """The resolved roots as strings (what a job records and its workers enforce)."""
        return [str(p) for p in self.paths]

    def contains(self, path: str | Path) -> bool:
        """Whether ``path`` resolves (symlinks, ``..``, ``~``) inside a root; False for NUL bytes."""
        try:
            resolved = Path(normalise_path(path))
        except PathError:
            return False
        return any(resolved == root or resolved.is_relative_to(root) for root in self.paths)

    def check(self, path: str | Path) -> str:
        """The canonical form of ``path`` if it lies inside a root.

        Raises:
            PathNotAllowedError: outside every root (or not a valid path), always with :data:`REFUSED`.
        """
        if not self.contains(path):
            raise PathNotAllowedError(f"{display_path(path)}: {REFUSED}")
        return normalise_path(path)


def check_allowed(path: str | Path, roots: Sequence[str | Path]) -> Path:
    """Resolve a user-typed ``path`` (symlinks, ``..``, ``~``) and check that it lies inside one of ``roots``.

    Args:
        path: a user-given path (may be relative, contain ``..`` or symlinks).
        roots: the allowed root folders (``Settings.allowed_roots``); each is resolved the same way.

    Returns:
        The resolved absolute path.

    Raises:
        PathNotAllowedError: no roots are configured, an empty root, a NUL byte in the path, or the resolved path is
            outside all roots (the message does not say where it resolves to, nor whether it exists).
    """
    if not roots:
        raise PathNotAllowedError(
            f"{display_path(path)}: server-side ingestion is disabled: no allowed roots configured "
            "(set HISTOQUERY_ALLOWED_ROOTS, e.g. '[\"/data/slides\"]')"
        )
    allowed = Roots(roots)
    if "\x00" in os.fspath(path):
        raise PathNotAllowedError(f"{display_path(path)}: not a valid path (it contains a NUL byte)")
    if not allowed.contains(path):
        listed = ", ".join(allowed.as_strings())
        raise PathNotAllowedError(f"{display_path(path)}: outside the allowed roots ({listed})")
    return Path(normalise_path(path))
