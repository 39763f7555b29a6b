"""Where output records go, and how a run stops cleanly.

``Sink`` writes each output record as whole lines, flushed at once, to stdout, one file (``-o``)
or one file per input file (``--output-dir``); with ``--resume`` it reports the ids a previous run
already wrote. ``StopGuard`` turns SIGINT/SIGTERM into a ``Stopped`` exception, but never in the
middle of a write: a signal that arrives while a line is written takes effect right after it, so
an output file never ends in a partial line.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from textgen.io import Record, format_jsonl, format_text, id_key, resume_ids

from .console import set_live_console


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM asked the run to stop (a KeyboardInterrupt, so no ``except Exception``
    inside a task swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class StopGuard:
    """Within ``with StopGuard() as guard:``, SIGINT/SIGTERM raise ``Stopped`` except inside
    ``guard.writing()``, where they are held until the write is complete."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._writing = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopGuard:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum
        if not self._writing:
            raise Stopped(signum)

    @contextmanager
    def writing(self) -> Iterator[None]:
        self._writing = True
        try:
            yield
        finally:
            self._writing = False
        if self.signum is not None:
            raise Stopped(self.signum)


class Sink:
    """Output records to text or JSONL lines on stdout, a file, or files mirroring the inputs."""

    def __init__(
        self,
        fmt: str,
        guard: StopGuard,
        *,
        output: Path | None = None,
        output_dir: Path | None = None,
        resume: bool = False,
    ) -> None:
        self.format = format_jsonl if fmt == "jsonl" else format_text
        self.suffix = ".jsonl" if fmt == "jsonl" else ".txt"
        self.guard = guard
        self.output = output
        self.output_dir = output_dir
        self.resume = resume
        self._files: dict[Path, IO[str]] = {}
        self._done: dict[Path, set[str]] = {}

    def target(self, rec: Record) -> Path | None:
        """The file ``rec``'s output goes to; None for stdout."""
        if self.output_dir is not None:
            return self.output_dir / Path(rec.source or "stdin").with_suffix(self.suffix)
        return self.output

    def done(self, rec: Record) -> bool:
        """True when resuming and ``rec``'s id is already in its output file."""
        path = self.target(rec)
        if not self.resume or path is None:
            return False
        if path not in self._done:
            self._done[path] = resume_ids(path)
        return id_key(rec.id) in self._done[path]

    def write(self, rec: Record, out: dict[str, Any]) -> None:
        text = self.format(out)
        stream = self._stream(self.target(rec))
        with self.guard.writing():
            stream.write(text)
            stream.flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def _stream(self, path: Path | None) -> IO[str]:
        if path is None:
            return sys.stdout
        f = self._files.get(path)
        if f is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if self.resume and path not in self._done:
                self._done[path] = resume_ids(path)  # also cuts a partial last line before appending
            # Held open across records and batches; close() closes it.
            f = self._files[path] = open(path, "a" if self.resume else "w", encoding="utf-8", newline="\n")  # noqa: SIM115
        return f


@contextmanager
def progress_bar(enabled: bool, total: int | None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr while the block runs; yields ``advance(n)``."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    # Printing stdout above the bar is right when stdout is the same terminal, wrong for a pipe.
    with Progress(*columns, console=Console(stderr=True), redirect_stdout=sys.stdout.isatty()) as bar:
        task = bar.add_task("generating", total=total)
        set_live_console(bar.console)
        try:
            yield lambda n: bar.advance(task, n)
        finally:
            set_live_console(None)
