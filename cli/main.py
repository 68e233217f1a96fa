"""Entry point of the ``histoquery`` console script.

Each subcommand lives in its own module under ``cli/`` and exposes ``register(subparsers)``; the module imports
its heavy dependencies inside the handler so that ``histoquery --help`` stays fast. Handlers return an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# Subcommand modules, in the order they appear in --help. A module missing here is simply not offered.
SUBCOMMANDS = ("train", "ingest", "worker", "jobs", "query", "evaluate", "doctor", "reembed", "dashboard", "demo")


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit code 2 unless given."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def configure_logging(verbosity: int) -> None:
    """Configure logging once, for the CLI process."""
    level = logging.WARNING - 10 * verbosity
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are the user's to fix: shown as one clear line, no traceback."""
    from ingest.errors import USER_ERRORS

    return (CLIError, *USER_ERRORS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="histoquery", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-v", "--verbose", action="count", default=1, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(0 if args.quiet else args.verbose)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except _user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
