"""Where output records go, and how a run stops cleanly (the guarantees are listed in docs/cli.md).

``Sink`` writes each output record as whole lines to stdout, one file (``-o``) or one file per
input file (``--output-dir``):

* ``prepare`` runs before the model loads: an output that cannot be written (a folder, a path under
  a file, a read-only place, a file another run is writing, the input itself under another name,
  standard input or output being that file) is a one-line usage error, not a traceback after the
  first batch. It opens and locks the ``-o`` file; the file is emptied only when the work starts.
* Each record is one ``os.write`` of whole lines. A write that fails (disk full) is undone by cutting
  the file back to its last whole record, and reported as an ``OutputError``: what was written stays
  intact and ``--resume`` finishes the run.
* ``--resume`` skips the records already written and retries the ones that failed: their error
  records are dropped from the file first (a new copy renamed over it, so a crash cannot leave half).
  ``check_resume`` refuses, before the model loads, a file that holds another task's or another
  model's output (each record names its ``task`` and ``model``).
* Output files are locked with ``flock`` while written; where there is no ``fcntl`` (Windows) or the
  file system refuses locks, files are written unlocked.

``StopGuard`` turns SIGINT/SIGTERM into a ``Stopped`` exception, but never in the middle of a write:
a signal that arrives while a line is written takes effect right after it.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from textgen.io import NotOurOutput, Record, Scan, id_key, scan_output
from textgen.output import Output, format_jsonl, format_text

from .console import error, note, say, set_live_console, warn

try:
    import fcntl
except ImportError:  # Windows: no advisory locks (docs/cli.md)
    fcntl = None  # type: ignore[assignment]


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM asked the run to stop (a KeyboardInterrupt, so no ``except Exception``
    inside a task swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class OutputError(Exception):
    """The output cannot be written: one line for the user."""


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


def file_key(path: Path) -> tuple[int, int] | None:
    """``(st_dev, st_ino)``: the same file under any name (hard links, symlinks); None if absent."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def stream_key(stream: Any) -> tuple[int, int] | None:
    """``file_key`` of a standard stream when it is a regular file (``< file``, ``> file``)."""
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # no file descriptor (a test runner's buffer)
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def _check_parent(path: Path) -> None:
    """The closest existing folder above ``path`` must be a folder, and the rest creatable."""
    above = path.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise OutputError(f"cannot create {path}: {above} is a file, not a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder {path.parent}: {exc.strerror or exc}") from None


class _File:
    """One output file, open and locked for the whole run."""

    def __init__(self, path: Path, *, resume: bool) -> None:
        if path.is_dir():
            raise OutputError(f"{path} is a directory; name a file to write to")
        _check_parent(path)
        self.path = path
        self.created = not path.exists()
        try:
            self.fd = os.open(path, (os.O_RDWR if resume else os.O_WRONLY) | os.O_CREAT, 0o666)  # read back to resume
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        self.regular = stat.S_ISREG(os.fstat(self.fd).st_mode)  # not a device (/dev/full) or a FIFO
        try:
            self._lock(self.fd)
        except OutputError:
            os.close(self.fd)
            raise
        self.scan: Scan | None = None
        if resume:
            if not self.regular:
                self.close()
                raise OutputError(f"--resume needs a regular file to read back, not {path}")
            try:
                self.scan = scan_output(self._read(), str(path))
            except NotOurOutput as exc:
                self.close()
                raise OutputError(str(exc)) from None
        self.size = 0
        self.begun = False

    def _lock(self, fd: int) -> None:
        if fcntl is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"{self.path} is being written by another textgen run; wait for it, or write elsewhere") from None
        except OSError:  # a file system without locks: write unlocked
            pass

    def _read(self) -> bytes:
        chunks = []
        os.lseek(self.fd, 0, os.SEEK_SET)
        while chunk := os.read(self.fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)

    def begin(self) -> None:
        """The work starts: empty the file (a new run), or continue after its whole successful
        records (``--resume``; a copy without the error records replaces it when it had some)."""
        if self.begun:
            return
        self.begun = True
        if not self.regular:
            return
        try:
            if self.scan is None:
                os.ftruncate(self.fd, 0)
            elif self.scan.changed:
                self._replace(self.scan.keep)
            self.size = os.lseek(self.fd, 0, os.SEEK_END)
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        if self.scan is not None and (self.scan.done or self.scan.failed):
            retry = f", retrying {len(self.scan.failed)} that failed" if self.scan.failed else ""
            note(f"resuming {self.path}: {len(self.scan.done)} records already written{retry}")

    def _replace(self, content: bytes) -> None:
        """Swap in a copy holding ``content``: written, synced and locked before it takes the
        name, so neither a crash nor another run ever sees half of it."""
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            self._lock(fd)
            os.fchmod(fd, stat.S_IMODE(os.fstat(self.fd).st_mode))
            _write_all(fd, content)
            os.fsync(fd)
            os.replace(tmp, self.path)
        except BaseException:
            os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            raise
        os.close(self.fd)
        self.fd = fd

    def write(self, data: bytes) -> None:
        """Append ``data``; on failure cut the file back to where it was, then raise."""
        try:
            _write_all(self.fd, data)
        except OSError:
            if self.regular:
                try:
                    os.ftruncate(self.fd, self.size)
                    os.lseek(self.fd, self.size, os.SEEK_SET)
                except OSError:
                    pass
            raise
        self.size += len(data)

    def close(self, *, discard: bool = False) -> None:
        """Close; with ``discard``, remove the file when this run created it and never began."""
        os.close(self.fd)
        if discard and self.created and not self.begun and self.regular:
            self.path.unlink(missing_ok=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
        label: bool = False,
    ) -> None:
        self.jsonl = fmt == "jsonl"
        self.suffix = ".jsonl" if self.jsonl else ".txt"
        self.guard = guard
        self.output = output
        self.output_dir = output_dir
        self.resume = resume
        self.label = label  # text lines start with the record's id (a directory run to one stream)
        self._files: dict[Path, _File] = {}
        self._scans: dict[Path, Scan] = {}  # --resume: what each existing output file holds
        self._begun = False

    @property
    def resumable(self) -> bool:
        """Whether a stopped run can be finished with ``--resume``: JSONL written to files."""
        return self.jsonl and (self.output is not None or self.output_dir is not None)

    # ------------------------------------------------------------------ before any work
    def prepare(self, input: Path | None, reads_stdin: bool) -> None:
        """Check (and open) the outputs before the model loads; ``OutputError`` says what is wrong.
        ``input`` is ``-i``; ``reads_stdin`` when the records come from standard input."""
        if self.output is not None:
            out = file_key(self.output)
            if out is not None and input is not None and input.is_file() and file_key(input) == out:
                raise OutputError(f"--output {self.output} is the input file {input} under another name: "
                                  "writing would destroy it")
            if out is not None and reads_stdin and stream_key(sys.stdin) == out:
                raise OutputError(f"standard input is the output file {self.output}: the run would read its own "
                                  "output; write to another file")
            self._files[self.output] = _File(self.output, resume=self.resume)
        elif self.output_dir is not None:
            self._prepare_dir(self.output_dir)
        else:
            stdout = stream_key(sys.stdout)
            if stdout is not None and (
                (reads_stdin and stream_key(sys.stdin) == stdout)
                or (input is not None and input.is_file() and file_key(input) == stdout)
            ):
                raise OutputError("standard output is the input file: the run would read its own output "
                                  "or destroy its input; write to another file")

    def _prepare_dir(self, folder: Path) -> None:
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"--output-dir {folder} is a file, not a directory")
        _check_parent(folder / "x")
        try:
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as exc:
            raise OutputError(f"cannot write in {folder}: {exc.strerror or exc}") from None

    def own_files(self) -> set[tuple[int, int]]:
        """Keys of what this run writes (the output file or folder, a redirected stdout), which a
        directory input must not read back."""
        paths = [p for p in (self.output, self.output_dir) if p is not None]
        keys = {file_key(p) for p in paths} | ({stream_key(sys.stdout)} if not paths else set())
        return {k for k in keys if k is not None}

    def check_targets(self, records: Iterable[Record]) -> None:
        """``--output-dir``: two inputs must not write one output file (``a.txt`` and ``a.md``),
        and no output file may be a folder."""
        if self.output_dir is None:
            return
        owner: dict[Path, str | None] = {}
        for rec in records:
            path = self.target(rec)
            if path is None or owner.setdefault(path, rec.source) == rec.source:
                continue
            raise OutputError(f"{owner[path]} and {rec.source} would both write {path}; narrow --glob or rename one")
        for path in owner:
            if path is not None and path.is_dir():
                raise OutputError(f"cannot write {path}: it is a directory")

    def check_resume(
        self, task: str, model: str, records: Iterable[Record] | None, same_model: Callable[[str], bool] | None = None
    ) -> None:
        """``--resume``: each existing output file must hold this task's output of this model
        (``records``: the input records of an ``--output-dir`` run, whose files are read here;
        None for a stream, which has only the ``-o`` file; ``same_model(name)``: whether a model
        named otherwise in the file is this one, such as a directory given by another path).
        ``OutputError`` names what the file holds and what this run is."""
        if not self.resume:
            return
        if self.output is not None:
            scan = self._files[self.output].scan
            if scan is not None:
                self._scans[self.output] = scan
        elif self.output_dir is not None and records is not None:
            for path in dict.fromkeys(p for p in map(self.target, records) if p is not None):
                if not path.is_file():
                    continue
                try:
                    self._scans[path] = scan_output(path.read_bytes(), str(path))
                except NotOurOutput as exc:
                    raise OutputError(str(exc)) from None
                except OSError as exc:
                    raise OutputError(f"cannot read {path} to resume: {exc.strerror or exc}") from None
        for path, scan in self._scans.items():
            others = [(t, m) for t, m in scan.made_by
                      if t != task or (m != model and not (same_model is not None and same_model(m)))]
            if others:
                held = " and ".join(f"{t} output of model {m!r}" for t, m in sorted(scan.made_by))
                raise OutputError(f"--resume: {path} holds {held}; this run is {task} with model {model!r}: "
                                  "resume with that task and model, write elsewhere, or drop --resume to overwrite it")

    def resume_notes(self, settings: dict[str, Any]) -> list[str]:
        """``--resume``: a warning for each file written with other settings than ``settings``
        (the ``textgen`` record's; files without one, from older versions, are not compared)."""
        notes = []
        for path, scan in self._scans.items():
            if scan.made_with is None or not isinstance(scan.made_with.get("settings"), dict):
                continue
            then = scan.made_with["settings"]
            changed = sorted(k for k in {*then, *settings} if then.get(k) != settings.get(k))
            if changed:
                diff = ", ".join(f"{k}={then.get(k, 'default')} there, {settings.get(k, 'default')} now" for k in changed)
                notes.append(f"resuming {path}, written with other settings: {diff}")
        return notes

    # ------------------------------------------------------------------ the run
    def begin(self) -> None:
        """The work starts: files opened by ``prepare`` are emptied (or, resuming, cleaned)."""
        self._begun = True
        for f in self._files.values():
            f.begin()

    def target(self, rec: Record) -> Path | None:
        """The file ``rec``'s output goes to; None for stdout."""
        if self.output_dir is not None:
            return self.output_dir / Path(rec.source or "stdin").with_suffix(self.suffix)
        return self.output

    def done(self, rec: Record) -> bool:
        """True when resuming and ``rec`` already succeeded in its output file."""
        path = self.target(rec)
        if not self.resume or path is None:
            return False
        scan = self._file(path).scan
        return scan is not None and id_key(rec.id) in scan.done

    def write(self, rec: Record, out: Output) -> None:
        text = format_jsonl(out) if self.jsonl else format_text(out, str(rec.id) if self.label else None)
        path = self.target(rec)
        with self.guard.writing():
            if path is None:
                self._stdout(text)
                return
            try:
                self._file(path).write(text.encode("utf-8"))
            except OSError as exc:
                then = "; rerun with --resume to finish" if self.jsonl else ""
                raise OutputError(f"cannot write {path}: {exc.strerror or exc}; "
                                  f"what was written before is intact{then}") from None

    def close(self) -> None:
        """Close every file; a file ``prepare`` created for a run that never began is removed."""
        for f in self._files.values():
            f.close(discard=not self._begun)
        self._files.clear()

    def _file(self, path: Path) -> _File:
        f = self._files.get(path)
        if f is None:
            f = self._files[path] = _File(path, resume=self.resume)
            if self._begun:
                f.begin()
        return f

    @staticmethod
    def _stdout(text: str) -> None:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            try:  # nothing more can be written: keep Python's exit-time flush from failing again
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            raise OutputError(f"cannot write to standard output: {exc.strerror or exc}") from None


@contextmanager
def working(description: str | None) -> Iterator[Callable[[], None]]:
    """A spinner with the elapsed time on stderr while one long record runs (``description``;
    None shows nothing); yields ``stop()``, which ends it early (before output is printed). It
    is erased when it stops, so the terminal keeps only the output and the messages."""
    if description is None:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    status = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=Console(stderr=True), transient=True, redirect_stdout=sys.stdout.isatty())
    status.add_task(description, total=None)
    status.start()
    set_live_console(status.console)
    running = True

    def stop() -> None:
        nonlocal running
        if running:
            running = False
            status.stop()
            set_live_console(None)

    try:
        yield stop
    finally:
        stop()


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


class Tally:
    """What a batch run wrote and how it ends, the same for a local run, ``--server`` and
    ``--engine ray``: each output's warnings and error reported and the output written, the stops
    and output failures turned into exit statuses, and the closing summary."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.written = self.failed = 0

    def record(self, rec: Record, out: Output, *, shown: bool = False) -> None:
        """Report ``out`` and write it (``shown``: its line is already printed, streamed)."""
        for message in out.warnings:
            warn(f"[{out.id}] {message}")
        if out.error is not None:
            error(f"[{out.id}] {out.error}")
        if not shown:
            self.sink.write(rec, out)
        self.written += 1
        self.failed += out.error is not None

    def ended(self, exc: BaseException) -> int:
        """The exit status of a run ended by ``exc`` (``Stopped``, ``BrokenPipeError`` or ``OutputError``)."""
        if isinstance(exc, Stopped):
            then = ("rerun with --resume to finish" if self.sink.resumable else
                    "only JSONL written to a file (--format jsonl -o FILE, or --output-dir) can be finished with --resume")
            error(f"stopped by {signal.Signals(exc.signum).name} after {self.written} records; {then}")
            return 128 + exc.signum
        if isinstance(exc, BrokenPipeError):
            # The reader went away (`| head`): stop quietly, and keep Python's exit-time flush of
            # stdout from failing again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        error(str(exc))
        return 1

    def status(self, seen: bool) -> int:
        """The exit status of a run that went through, with its summary line."""
        if not seen:
            warn("no input records (blank lines are not records)")
        if self.failed:
            say(f"textgen: {self.failed} of {self.written} records failed")
            return 1
        return 0
