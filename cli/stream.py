"""Printing one record's output while it is generated (``--stream``; on by default for a single
input on a terminal, and in the REPL on a terminal).

The task hands each new piece of text to ``Stream`` (``Task.run(..., on_text=stream)``); when the
record is complete, ``close`` prints whatever the finished record adds (the end of the line, or
the whole text if nothing was streamed). Pipes and files get whole records, as without streaming.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from textgen.output import Output, format_text


class Stream:
    """Writes pieces of one output to stdout as they come, then completes the record."""

    def __init__(self) -> None:
        self.shown = ""
        self.before_first: Callable[[], None] | None = None  # called once, before the first piece (ends a spinner)

    def __call__(self, piece: str) -> None:
        if self.before_first is not None:
            before, self.before_first = self.before_first, None
            before()
        sys.stdout.write(piece)
        sys.stdout.flush()
        self.shown += piece

    def close(self, out: Output) -> bool:
        """Complete ``out``'s line after what was streamed; False (nothing written) when nothing
        was streamed, so the caller writes the record as usual. Resets for the next record."""
        shown, self.shown = self.shown, ""
        if not shown:
            return False
        full = format_text(out)
        if out.error is not None or not full.startswith(shown):  # the finished text is not what was shown
            rest = "\n" if out.error is not None else "\n" + full
        else:
            rest = full[len(shown) :]
        sys.stdout.write(rest)
        sys.stdout.flush()
        return True


def stream_wanted(flag: bool | None, *, single: bool, text_format: bool = True, to_stdout: bool = True) -> bool:
    """Whether to stream: ``--stream``/``--no-stream`` when given (text printed to stdout only),
    else for a single input printed as text to a terminal."""
    if not (text_format and to_stdout):
        return False
    return flag if flag is not None else single and sys.stdout.isatty()
