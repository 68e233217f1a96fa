"""The CLI's own error: a user-facing problem found by a subcommand (a leaf module: every ``cli`` module may import it).

It lives apart from :mod:`cli.main` because ``main`` imports every subcommand module: a subcommand importing its
error from ``main`` would close an import circle.
"""

from __future__ import annotations


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit code 2 unless given."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
