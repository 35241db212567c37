"""One exception type for bad user input, and the one-line CLI wrapper that reports it."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., int])


class InputError(ValueError):
    """Bad input from the user: a file, a dataset or a value that cannot be used.

    The message always starts with the offending file (or dataset name) and then names the problem,
    so a CLI can print it as one line.
    """

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


def cli_errors(main: F) -> F:
    """Wrap a CLI ``main`` so an :class:`InputError` prints one line on stderr and exits with 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except InputError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]
