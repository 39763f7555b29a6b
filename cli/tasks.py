"""The generation commands (``title``, ``continue``) and the placeholders for later tasks.

One factory builds every task command from the shared options (``cli.options``), so the commands
cannot drift apart. A run: check the usage, read the records, resolve the model and decoding
settings (all before torch is imported), load the model, then stream batches through the task and
out through the sink, one output record per input record.

Exit status: 0 when every record succeeded, 1 when some failed or the output could not be
written (a summary on stderr), 2 for usage errors, 128 + signal number when stopped by SIGINT/SIGTERM
(rerun with ``--resume`` to finish). docs/cli.md lists the guarantees of a run.
"""

from __future__ import annotations

import inspect
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import PurePosixPath
from typing import Annotated, Any

import typer

from textgen.io import Record, check_encoding, read_path, read_stream, read_text, unique_ids
from textgen.tasks import PLANNED, TASKS, Task

from .console import error, fail, say, warn
from textgen.models.registry import DEFAULT_MODELS, ModelInfo, ModelNotFound, resolve

from .engine import Engine, EngineError, decoding_config, fit_length, ignored_settings, pick_device, resolve_model, settings
from .options import decoding_overrides, decoding_params, input_params, model_params, output_params, run_params
from .output import OutputError, Sink, StopGuard, Stopped, progress_bar
from .stream import Stream, stream_wanted

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
    params = input_params() + output_params() + model_params() + run_params() + decoding_params(name, shown) + extra

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
    """The task's built-in model, described from its JSON files (no torch), if it has one."""
    try:
        return resolve(DEFAULT_MODELS[name])
    except (KeyError, ModelNotFound):
        return None


def _default_model_settings(name: str, info: ModelInfo | None) -> str:
    """A help paragraph naming what the task's default model sets in its textgen.json, so that
    ``--help`` shows the settings a bare run really uses."""
    if info is None:
        return ""
    sets = {**info.decoding.get(name, {}), **info.options.get(name, {})}
    if not sets:
        return ""
    return f"\n\nThe default model, {info.name}, sets: " + ", ".join(f"{k}={v}" for k, v in sets.items()) + "."


def planned_command(name: str) -> Callable[..., None]:
    """A command whose task is announced but not in this release: says so in one line, exit 2."""

    def command(ctx: typer.Context) -> None:
        fail(f"`textgen {name}` is not available in this release")

    command.__doc__ = f"{PLANNED[name]} (not available in this release)"
    command.__name__ = name
    return command


# ---------------------------------------------------------------------- one run
def run_task(name: str, v: dict[str, Any]) -> int:
    """Run the task ``name`` with the parsed option values ``v``; returns the exit status."""
    _check_usage(v)
    options = {opt: v[opt] for opt in TASKS[name].options if v[opt] is not None}
    try:
        options = {opt: TASKS[name].check_option(opt, value) for opt, value in options.items()}
    except ValueError as exc:
        fail(str(exc))
    overrides = decoding_overrides(v)
    if v["text"] is None and v["input"] is None and sys.stdin.isatty():
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
        records, task, config = _prepare(name, v, sink, guard, options, overrides, skipped)
    except Stopped as stop:
        sink.close()
        error(f"stopped by {signal.Signals(stop.signum).name} while loading the model")
        return 128 + stop.signum
    except BaseException:
        sink.close()  # a file made for this run, which never began, is removed
        raise
    total = len(records) if isinstance(records, list) else None
    show = v["progress"] if v["progress"] is not None else sys.stderr.isatty() and (total is None or total > 1)
    streaming = stream_wanted(
        v["stream"], single=total == 1, text_format=v["format"].value == "text",
        to_stdout=v["output"] is None and v["output_dir"] is None,
    )
    status = _process(records, task, config, sink, batch_size=v["batch_size"], progress=show and not streaming,
                      total=total, stream=Stream() if streaming else None)
    if skipped:
        say(f"textgen: {len(skipped)} folder(s) under {v['input']} could not be read")
    return 1 if skipped and status == 0 else status


def _prepare(
    name: str, v: dict[str, Any], sink: Sink, guard: StopGuard, options: dict[str, Any], overrides: dict[str, Any],
    skipped: list[str],
) -> tuple[list[Record] | Iterator[Record], Task, Any]:
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
        with guard:
            user = settings()
            info = resolve_model(name, v["model"], user)
            config = decoding_config(name, info, user, overrides)
            for message in ignored_settings(config, overrides):
                warn(message)
            device = pick_device(v["device"].value if v["device"] else user.device, v["threads"] or user.threads)
            dtype = v["dtype"].value if v["dtype"] else None
            engine = Engine(user, device, allow_pickle=v["allow_pickle"], dtype=dtype, prompt_file=v["prompt_file"])
            task = engine.task(name, info)
            task.configure(**options)
            config = fit_length(task, config, explicit="max_new_tokens" in overrides)
    except (EngineError, OutputError) as exc:
        fail(str(exc))
    return records, task, config


def _check_usage(v: dict[str, Any]) -> None:
    if v["text"] is not None and v["input"] is not None:
        fail("give a text or --input, not both")
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
    task: Task,
    config: Any,
    sink: Sink,
    *,
    batch_size: int,
    progress: bool,
    total: int | None,
    stream: Stream | None = None,
) -> int:
    written = failed = seen = 0
    try:
        with sink.guard, progress_bar(progress, total) as advance:
            sink.begin()
            for batch in _batches(records, batch_size):
                seen += len(batch)
                todo = [rec for rec in batch if not sink.done(rec)]
                for rec, out in zip(todo, task.run(todo, config, on_text=stream)):
                    streamed = stream is not None and stream.close(out)  # its line is printed
                    _report(out)
                    if not streamed:
                        sink.write(rec, out)
                    written += 1
                    failed += "error" in out
                advance(len(batch))
    except Stopped as stop:
        error(f"stopped by {signal.Signals(stop.signum).name} after {written} records; rerun with --resume to finish")
        return 128 + stop.signum
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python's exit-time flush of
        # stdout from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OutputError as exc:
        error(str(exc))
        return 1
    finally:
        sink.close()
    if not seen:
        warn("no input records (blank lines are not records)")
    if failed:
        say(f"textgen: {failed} of {written} records failed")
        return 1
    return 0


def _batches(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    it = iter(records)
    while batch := list(islice(it, size)):
        yield batch


def _report(out: dict[str, Any]) -> None:
    for message in out.get("warnings", ()):
        warn(f"[{out['id']}] {message}")
    if "error" in out:
        error(f"[{out['id']}] {out['error']}")
