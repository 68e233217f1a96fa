"""Entry point of the ``histoquery`` console script.

Each subcommand lives in its own module under ``cli/`` and exposes ``register(subparsers)``; the module imports
its heavy dependencies inside the handler so that ``histoquery --help`` stays fast. Handlers return an exit code;
a user-facing problem is a :class:`cli.errors.CLIError`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from cli import dashboard as dashboard_cmd
from cli import demo as demo_cmd
from cli import doctor as doctor_cmd
from cli import evaluate as evaluate_cmd
from cli import ingest as ingest_cmd
from cli import jobs as jobs_cmd
from cli import query as query_cmd
from cli import reembed as reembed_cmd
from cli import train as train_cmd
from cli import worker as worker_cmd
from cli.errors import CLIError

# Subcommand modules, in the order they appear in --help. Imported plainly: a missing module is an install error
# to see at once, not a subcommand silently left out of --help.
_MODULES = (
    train_cmd, ingest_cmd, worker_cmd, jobs_cmd, query_cmd, evaluate_cmd, doctor_cmd, reembed_cmd, dashboard_cmd,
    demo_cmd,
)  # fmt: skip
SUBCOMMANDS = tuple(module.__name__.rpartition(".")[2] for module in _MODULES)

__all__ = ["SUBCOMMANDS", "CLIError", "build_parser", "main"]


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
    for module in _MODULES:
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
