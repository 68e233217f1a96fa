"""Plain-text tables for the CLI commands (query, evaluate, doctor, jobs, ingest); their JSON is
:func:`retrieval.jsonable.dumps`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def printable(value: Any) -> str:
    """``str(value)`` safe for a terminal: control characters (ANSI escapes, newlines, C1) shown as ``\\x1b``.

    Labels, file names and reasons come from users' files: printed raw, an escape sequence could rewrite the
    terminal (hide rows, fake output).
    """
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell: ``-`` for None, fixed digits for floats, :func:`printable` text otherwise."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return printable(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)
