"""Messages on stderr: one line each, prefixed ``textgen:``; never a traceback for a user mistake.

While a progress bar is live, messages go through its console so they print above the bar
instead of tearing it.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import typer

USAGE = 2  # exit status for usage errors (as click uses)

_live_console: Any = None  # the progress bar's rich Console while one is shown


def say(message: str) -> None:
    """A line on stderr."""
    if _live_console is not None:
        _live_console.print(message, markup=False, highlight=False, soft_wrap=True)
    else:
        print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    say(f"textgen: warning: {message}")


def error(message: str) -> None:
    say(f"textgen: error: {message}")


def fail(message: str, code: int = USAGE) -> NoReturn:
    """Report a problem in one line and exit with ``code`` (usage error by default)."""
    error(message)
    raise typer.Exit(code)


def set_live_console(console: Any) -> None:
    global _live_console
    _live_console = console
