"""Old spellings of CLI flags kept working: hidden from ``--help``, they set the new flag and say its name."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any


class _RenamedFlag(argparse.Action):
    """A hidden old name of a boolean flag: sets the new flag's destination and notes the new name on stderr."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: Any = None
    ) -> None:
        print(f"note: {option_string} is now {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, True)


def renamed_flag(parser: Any, old: str, new: str) -> None:
    """Accept ``old`` as a hidden, deprecated alias of the boolean flag ``new`` (``store_true``) of ``parser`` (a
    parser or an argument group); ``new`` must be added to it too."""
    parser.add_argument(old, dest=new.lstrip("-").replace("-", "_"), action=_RenamedFlag, new=new)
