"""Messages on stderr: one line each, prefixed ``textgen:``; never a traceback for a user mistake.

While a progress bar is live, messages go through its console so they print above the bar
instead of tearing it. ``-q`` (``set_quiet``) silences warnings and notes (``warn``, ``note``);
errors and failure summaries (``error``, ``say``) are always shown.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import typer

USAGE = 2  # exit status for usage errors (as click uses)

_live_console: Any = None  # the progress bar's rich Console while one is shown
_quiet = False  # -q: no warnings or notes


def say(message: str) -> None:
    """A line on stderr."""
    if _live_console is not None:
        _live_console.print(message, markup=False, highlight=False, soft_wrap=True)
    else:
        print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    if not _quiet:
        say(f"textgen: warning: {message}")


def note(message: str) -> None:
    """A line that informs (resuming, what a run uses); silenced by ``-q`` as warnings are."""
    if not _quiet:
        say(f"textgen: {message}")


def error(message: str) -> None:
    say(f"textgen: error: {message}")


def fail(message: str, code: int = USAGE) -> NoReturn:
    """Report a problem in one line and exit with ``code`` (usage error by default)."""
    error(message)
    raise typer.Exit(code)


def set_live_console(console: Any) -> None:
    global _live_console
    _live_console = console


def set_quiet(quiet: bool) -> bool:
    """Silence (or not) warnings and notes; returns the previous setting, to put back."""
    global _quiet
    previous, _quiet = _quiet, quiet
    return previous


def is_quiet() -> bool:
    return _quiet

