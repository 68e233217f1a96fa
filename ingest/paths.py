"""Path checks for server-side ingestion (dashboard / API): only folders under configured roots."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ingest.errors import PathNotAllowedError


def check_allowed(path: str | Path, roots: Sequence[Path]) -> Path:
    """Resolve ``path`` (symlinks, ``..``, ``~``) and check that it lies inside one of ``roots``.

    Args:
        path: a user-given path (may be relative, contain ``..`` or symlinks).
        roots: the allowed root folders (``Settings.allowed_roots``); each is resolved the same way.

    Returns:
        The resolved absolute path.

    Raises:
        PathNotAllowedError: no roots are configured, or the resolved path is outside all of them.
    """
    if not roots:
        raise PathNotAllowedError(
            f"{path}: server-side ingestion is disabled: no allowed roots configured "
            "(set HISTOQUERY_ALLOWED_ROOTS, e.g. '[\"/data/slides\"]')"
        )
    resolved = Path(os.path.expanduser(str(path))).resolve()
    for root in roots:
        root_resolved = Path(os.path.expanduser(str(root))).resolve()
        if resolved == root_resolved or resolved.is_relative_to(root_resolved):
            return resolved
    allowed = ", ".join(str(Path(r).resolve()) for r in roots)
    raise PathNotAllowedError(f"{path}: resolves to {resolved}, which is outside the allowed roots ({allowed})")
