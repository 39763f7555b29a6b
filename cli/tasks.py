"""The task commands (``title``, ``summarize``, ``qa``, ``search``, ``continue``), one per registered task.

One factory builds every task command from the shared options (``cli.options``) and the task's
declaration (``textgen.tasks``), so the commands cannot drift apart. A run: check the usage, read
the records, let the runner (``textgen.runner``) resolve the model, check the settings and load
the task, then stream batches through it and out through the sink, one output record per input
record.

Exit status: 0 when every record succeeded, 1 when some failed or the output could not be
written (a summary on stderr), 2 for usage errors, 128 + signal number when stopped by SIGINT/SIGTERM
(a JSONL file output is finished with ``--resume``). docs/cli.md lists the guarantees of a run.

JSONL records carry ``"textgen": {"version", "settings"}`` (``textgen.runner.made_with``): what
they were made with. ``-q`` silences warnings and notes, ``-v`` prints the model, device and settings at start.
"""

from __future__ import annotations

import inspect
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import PurePosixPath
from typing import Annotated, Any

import typer

from textgen.io import Record, check_encoding, read_path, read_stream, read_text, unique_ids
from textgen.models.registry import ModelInfo, ModelNotFound, resolve
from textgen.runner import Job, Runner, RunError, made_with
from textgen.tasks import DEFAULT_MODELS, TASKS, Task

from .console import error, fail, is_quiet, say, set_quiet, warn
from .options import (
    FLAG_NAMES,
    Format,
    decoding_overrides,
    decoding_params,
    engine_params,
    input_params,
    model_params,
    output_params,
    run_params,
)
from .output import OutputError, Sink, StopGuard, Stopped, Tally, progress_bar, working
from .ray_engine import check_engine_usage, run_ray, wants_ray
from .stream import Stream, stream_wanted

# A single record at least this long shows a spinner with the elapsed time on a terminal (a
# 1,000,000-character summary takes a minute or more, most of it scoring clauses).
LONG_RECORD = 20_000
# What the spinner says a task is doing ("summarizing a 1,000,000-character document").
_DOING = {"title": "titling", "summarize": "summarizing", "qa": "asking questions about",
          "search": "searching with", "continue": "continuing"}


def _option_param(cls: type[Task], opt: str, default: Any) -> inspect.Parameter:
    """The CLI parameter of one task option (``Task.options``): ``--x/--no-x`` for a boolean,
    ``--x VALUE`` otherwise; not given (None) means the model's textgen.json choice, else the default."""
    flag = "--" + opt.replace("_", "-")
    choices = cls.option_choices.get(opt)
    shown = ("on" if default else "off") if isinstance(default, bool) else repr(default)
    text = (cls.option_help.get(opt, "") + (f" One of: {', '.join(choices)}." if choices else "")
            + f" Default: the model's choice, else {shown}.")
    decl = (f"{flag}/--no-{opt.replace('_', '-')}",) if isinstance(default, bool) else (flag,)
    return inspect.Parameter(
        opt,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            type(default) | None,
            typer.Option(*decl, help=text.strip(), rich_help_panel="Task", show_default=False),
        ],
    )


def task_command(name: str) -> Callable[..., None]:
    """A typer command function for the task ``name``, its signature built from the shared options."""
    cls = TASKS[name]
    extra = [_option_param(cls, opt, default) for opt, default in cls.options.items()]
    default_model = _default_model(name)
    # The flags' help shows what a bare run uses: the task's defaults as the default model changes them.
    shown = {**cls.defaults, **(default_model.decoding.get(name, {}) if default_model else {})}
    decoding = decoding_params(name, shown, cls.decoding_fields)
    params = input_params() + output_params() + model_params() + run_params() + engine_params() + decoding + extra

    def command(**values: Any) -> None:
        raise typer.Exit(run_task(name, values))

    defaults = ", ".join(f"{k}={v}" for k, v in cls.defaults.items())
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = (
        f"{cls.summary}\n\nDefaults for {name}: {defaults} "
        "(a model's textgen.json, the config file and the flags below override them)."
        + _default_model_settings(name, default_model)
    )
    command.__name__ = name
    return command


def _default_model(name: str) -> ModelInfo | None:
    """The model a bare run of the task uses (the user's settings, else the built-in one),
    described from its JSON files (no torch), if it can be found."""
    from textgen.config import ConfigError, load_settings

    try:
        spec = load_settings().model_for(name)
    except ConfigError:
        spec = None
    for candidate in (spec, DEFAULT_MODELS.get(name)):
        if candidate:
            try:
                return resolve(candidate)
            except ModelNotFound:
                continue
    return None


def _default_model_settings(name: str, info: ModelInfo | None) -> str:
    """A help paragraph naming the model a bare run uses and what its textgen.json sets, so that
    ``--help`` shows the settings a bare run really uses."""
    if info is None:
        return ""
    where = "built in" if info.name == DEFAULT_MODELS.get(name) else "from your settings"
    text = (f"\n\nDefault model: {info.name} ({where}; --model, $TEXTGEN_MODEL or `textgen config set-model NAME` "
            "change it).")
    sets = {**info.decoding.get(name, {}), **info.options.get(name, {})}
    if sets:
        text += " It sets: " + ", ".join(f"{k}={v}" for k, v in sets.items()) + "."
    return text


# ---------------------------------------------------------------------- one run
def run_task(name: str, v: dict[str, Any]) -> int:
    """Run the task ``name`` with the parsed option values ``v``; returns the exit status."""
    _check_usage(v)
    quiet = set_quiet(v["quiet"])
    try:
        return _run_task(name, v)
    finally:
        set_quiet(quiet)


def _run_task(name: str, v: dict[str, Any]) -> int:
    options = {opt: v[opt] for opt in TASKS[name].options if v[opt] is not None}
    try:
        TASKS[name].checked(options)
    except ValueError as exc:
        fail(str(exc))
    overrides = decoding_overrides(v)
    if v["text"] is None and v["input"] is None and sys.stdin.isatty():
        if v.get("server"):
            fail("--server runs a text, -i FILE or piped input; the REPL runs here, without --server")
        from .repl import run_repl

        return run_repl(
            name,
            model=v["model"],
            overrides=overrides,
            options=options,
            device=v["device"],
            threads=v["threads"],
            allow_pickle=v["allow_pickle"],
            dtype=v["dtype"],
            prompt_file=v["prompt_file"],
            stream=v["stream"],
        )
    guard = StopGuard()
    label = v["format"].value == "text" and v["output_dir"] is None and v["input"] is not None and v["input"].is_dir()
    sink = Sink(v["format"].value, guard, output=v["output"], output_dir=v["output_dir"], resume=v["resume"], label=label)
    skipped: list[str] = []
    try:
        records, runner, job = _prepare(name, v, sink, guard, options, overrides, skipped)
    except Stopped as stop:
        sink.close()
        error(f"stopped by {signal.Signals(stop.signum).name} while loading the model")
        return 128 + stop.signum
    except BaseException:
        sink.close()  # a file made for this run, which never began, is removed
        raise
    if v.get("server"):
        from .client import run_remote

        status = run_remote(name, records, sink, v, options=options, decoding=overrides)
        if skipped:
            say(f"textgen: {len(skipped)} folder(s) under {v['input']} could not be read")
        return 1 if skipped and status == 0 else status
    if v["verbose"]:
        _describe(runner, job)
    for message in sink.resume_notes(made_with(job)["settings"]):
        warn(message)
    total = len(records) if isinstance(records, list) else None
    terminal = v["progress"] is not False and not is_quiet() and _stderr_is_terminal()
    show = v["progress"] if v["progress"] is not None else terminal and (total is None or total > 1)
    streaming = stream_wanted(
        v["stream"], single=total == 1, text_format=v["format"].value == "text",
        to_stdout=v["output"] is None and v["output_dir"] is None,
    )
    bar = show and not streaming
    long = None
    if terminal and not bar and total == 1 and len(records[0].text or "") >= LONG_RECORD:
        long = f"{_DOING.get(name, name)} a {len(records[0].text or ''):,}-character document…"
    if wants_ray(v):
        status = run_ray(name, v, records, runner, job, sink, options=options, overrides=overrides,
                         progress=show, total=total)
    else:
        status = _process(records, runner, job, sink, batch_size=v["batch_size"], progress=bar,
                          total=total, stream=Stream() if streaming else None, status=long)
    if skipped:
        say(f"textgen: {len(skipped)} folder(s) under {v['input']} could not be read")
    return 1 if skipped and status == 0 else status


def _resolves_to(spec: str, path: Any) -> bool:
    """Whether the model ``spec`` (as an output file names it) is the model at ``path``."""
    try:
        return resolve(spec).path == path
    except ModelNotFound:
        return False


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def _describe(runner: Runner, job: Job) -> None:
    """``-v``: the model, device and settings this run uses, before its first record."""
    info = job.info
    threads = str(runner.threads) if runner.threads else "torch's default"
    if not runner.threads and "torch" in sys.modules:  # loaded with the model
        threads = f"{sys.modules['torch'].get_num_threads()} (torch's default)"
    say(f"textgen: model {info.name} ({info.source}: {info.path}), device {runner.device()}, "
        f"dtype {runner.dtype or 'default'}, threads {threads}")
    settings = made_with(job)["settings"]
    strategy = {"beam": "beam search", "sample": "sampling", "greedy": "greedy decoding"}[job.config.strategy]
    decoding = " ".join(f"{k}={v}" for k, v in settings.items() if k not in job.task.settings)
    say(f"textgen: {job.name}: {strategy}" + (f", {decoding}" if decoding else ""))
    if job.task.settings:
        say("textgen: options: " + " ".join(f"{k}={v}" for k, v in job.task.settings.items()))


def _prepare(
    name: str, v: dict[str, Any], sink: Sink, guard: StopGuard, options: dict[str, Any], overrides: dict[str, Any],
    skipped: list[str],
) -> tuple[list[Record] | Iterator[Record], Runner, Job]:
    """Everything before the first record: the outputs checked and opened, the records read (never
    the run's own outputs), the model loaded and the settings checked against it. Any problem is
    one line and exit 2, before any work."""

    def skip(message: str) -> None:
        warn(message)
        skipped.append(message)

    try:
        sink.prepare(v["input"], reads_stdin=v["text"] is None and v["input"] is None)
        records = _records(v, exclude=sink.own_files(), on_skip=skip)
        if isinstance(records, list):
            sink.check_targets(records)
        if v.get("server"):  # a `textgen serve` loads the model and checks the settings (cli/client.py)
            return records, None, None
        with guard:
            runner = Runner(
                device=v["device"].value if v["device"] else None, threads=v["threads"],
                dtype=v["dtype"].value if v["dtype"] else None, allow_pickle=v["allow_pickle"], prompt_file=v["prompt_file"],
            )
            if sink.resume:  # whose output the file holds, before the model loads (resolving needs no torch)
                info = runner.resolve(name, v["model"])
                sink.check_resume(name, info.name, records if isinstance(records, list) else None,
                                  same_model=lambda other: _resolves_to(other, info.path))
            job = runner.job(name, v["model"], options=options, decoding=overrides, names=FLAG_NAMES)
    except (RunError, OutputError) as exc:
        fail(str(exc))
    for message in job.warnings:
        warn(message)
    return records, runner, job


def _check_usage(v: dict[str, Any]) -> None:
    if v["quiet"] and v["verbose"]:
        fail("give -q or -v, not both")
    if v["json"]:
        if v["format"] not in (None, Format.jsonl):
            fail(f"--json is --format jsonl; drop --format {v['format'].value} or --json")
        v["format"] = Format.jsonl
    elif v["format"] is None:
        v["format"] = Format.text
    if v["text"] is not None and v["input"] is not None:
        fail("give a text or --input, not both")
    if v["input"] is not None and str(v["input"]) == "-":
        v["input"] = None  # `-i -` is stdin, as no --input is (every later use of v["input"] sees None)
    if v["output"] is not None and v["output_dir"] is not None:
        fail("give --output or --output-dir, not both")
    if v["output_dir"] is not None and v["input"] is None:
        fail("--output-dir mirrors input files: it needs --input FILE or DIR")
    if v["resume"] and v["output"] is None and v["output_dir"] is None:
        fail("--resume needs --output FILE or --output-dir DIR to resume")
    if v["resume"] and v["format"].value != "jsonl":
        fail("--resume needs --format jsonl (plain text output has no ids to resume from)")
    if v["encoding"] is not None:
        try:
            check_encoding(v["encoding"])
        except ValueError as exc:
            fail(f"--encoding: {exc}")
    _unused_flags(v)
    check_engine_usage(v)
    if v["input"] is None:
        return
    if not v["input"].exists():
        fail(f"no such file or directory: {v['input']}")
    source = v["input"].resolve()
    if v["output"] is not None and v["output"].resolve() == source:
        fail("--output is the input file: writing would destroy it")
    if v["output"] is not None and source.is_dir() and v["output"].is_file():
        inside = v["output"].resolve()
        if inside.is_relative_to(source) and PurePosixPath(inside.relative_to(source).as_posix()).match(v["glob"]):
            fail(f"--output {v['output']} is one of the input files (--glob {v['glob']!r} in {v['input']}): "
                 "writing would destroy it; write it elsewhere")
    if v["output_dir"] is not None and v["output_dir"].resolve() == (source if source.is_dir() else source.parent):
        fail("--output-dir is the input's directory: outputs would overwrite inputs; pick another directory")


def _unused_flags(v: dict[str, Any]) -> None:
    """Warn about input flags that do nothing for this input, rather than ignore them silently."""
    source = v["input"]
    table = source is not None and source.suffix.lower() in (".jsonl", ".json", ".tsv") and not source.is_dir()
    if v["lines"] and table:
        warn(f"--lines has no effect on {source.suffix} input: it is read record by record")
    if v["field"] is not None and not table and (source is None or not source.is_dir()):
        warn("--field has no effect here: it picks the text of .jsonl, .json and .tsv records")
    if v["glob"] != "*.txt" and (source is None or not source.is_dir()):
        warn("--glob has no effect here: it picks the files of an input directory")


def _records(
    v: dict[str, Any], *, exclude: set[tuple[int, int]], on_skip: Callable[[str], None]
) -> list[Record] | Iterator[Record]:
    """The input records, with unique ids (``unique_ids``): a list for a text or files (so the
    progress bar knows the total), a lazy stream for stdin (so piped lines are answered as they
    arrive, a batch at a time). ``exclude`` are this run's own outputs, never read as inputs."""
    encoding = v["encoding"]
    if v["text"] is not None:
        return list(unique_ids(read_text(v["text"], lines=v["lines"], encoding=encoding)))
    if v["input"] is None:
        return unique_ids(read_stream(sys.stdin.buffer, lines=v["lines"], encoding=encoding))
    try:
        records = list(unique_ids(read_path(
            v["input"], lines=v["lines"], field=v["field"], glob=v["glob"], encoding=encoding, exclude=exclude,
            on_skip=on_skip,
        )))
    except (OSError, ValueError) as exc:
        fail(f"cannot read {v['input']}: {getattr(exc, 'strerror', None) or exc}")
    if not records:
        fail(f"{v['input']}: no input records (directories are read with --glob {v['glob']!r})")
    return records


def _process(
    records: Iterable[Record],
    runner: Runner,
    job: Job,
    sink: Sink,
    *,
    batch_size: int,
    progress: bool,
    total: int | None,
    stream: Stream | None = None,
    status: str | None = None,
) -> int:
    """Run the records through the job into the sink; ``status``: a spinner line while the one
    (long) record runs, ended by its first streamed piece or its output."""
    tally, seen = Tally(sink), 0
    stamp = made_with(job)
    try:
        with sink.guard, progress_bar(progress, total) as advance, working(status) as stop_status:
            sink.begin()
            counted = _Counted(records)
            if stream is not None:
                stream.before_first = stop_status

            def done(rec: Record) -> bool:  # resumed: already in the output
                if sink.done(rec):
                    advance(1)
                    return True
                return False

            for rec, out in runner.run(job, counted, batch_size=batch_size, on_text=stream, skip=done):
                stop_status()
                out.made_with = stamp
                tally.record(rec, out, shown=stream is not None and stream.close(out))
                advance(1)
            seen = counted.seen
    except (Stopped, BrokenPipeError, OutputError) as exc:
        return tally.ended(exc)
    finally:
        sink.close()
    return tally.status(bool(seen))


class _Counted:
    """The records, counted as the runner takes them."""

    def __init__(self, records: Iterable[Record]) -> None:
        self.records, self.seen = iter(records), 0

    def __iter__(self) -> Iterator[Record]:
        for rec in self.records:
            self.seen += 1
            yield rec


