"""What a bad command line is: :class:`UsageError` and a parser that reports it on one line.

Benches, ``recurrent-zoo train`` and the front-end import these from here, so that checking an
option needs nothing heavier than :mod:`argparse`.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class UsageError(ValueError):
    """A bad option value: the command line prints it on one line and exits with status 2."""


class Parser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose errors are one line on stderr and exit status 2
    (argparse's default prints the usage first)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


__all__ = ["Parser", "UsageError"]
