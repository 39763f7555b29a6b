"""``textgen repl``: type a text, get the task's output; change task, model and settings as you go.

On a terminal, prompt_toolkit gives line editing and a history kept in
``$XDG_STATE_HOME/textgen/history`` (``~/.local/state/textgen/history``). With stdin not a terminal
the same commands are read line by line without prompts, so a REPL session can be scripted.
Ctrl-C cancels a running generation or a ``:paste`` (or clears the line) and returns to the prompt;
Ctrl-D or ``:quit`` leaves with status 0. ``textgen repl`` takes the task commands' decoding flags
for the task it starts with; ``:set`` values belong to the task they were set for, so beam search
set for titles does not follow into ``:task continue``. A ``:set`` that would make the next text
fail (a value of the wrong type, a length with no room for the input, an option the model cannot
serve) is refused at once in one line, and the settings in force stay.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any

import typer

from textgen.io import make_record
from textgen.models.registry import ModelInfo
from textgen.output import format_text
from textgen.runner import Runner, RunError
from textgen.tasks import TASKS

from .console import error, fail, say, warn
from .options import DECODING_FLAGS, Device, Dtype, decoding_overrides, decoding_params
from .stream import Stream, stream_wanted

HELP = """\
Type a text and press Enter to run the task on it. Commands:
  :task NAME         switch task ({tasks})
  :model NAME        switch model (embedded name, directory or cached hub id)
  :set KEY=VALUE ... set decoding options (beam=4, sample=true, top_p=0.9, max_new_tokens=64, ...)
                     or task options (heal=false); :set alone shows the settings in force
  :paste             enter a multi-line text, ended by an empty line (Ctrl-C cancels it)
  :help              this help
  :quit              leave (Ctrl-D too); Ctrl-C cancels a running generation"""


@dataclass
class Repl:
    """The REPL's state: what the user chose, and the runner that loads each model on first use
    and keeps it (a chat model serves every task it switches to without loading again)."""

    task: str
    model: str | None  # None: the task's default model
    runner: Runner
    info: ModelInfo
    overrides: dict[str, Any] = field(default_factory=dict)  # DecodingConfig fields set by flags or :set
    options: dict[str, Any] = field(default_factory=dict)  # task options set by flags or :set
    saved: dict[str, tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=dict)  # other tasks' settings
    stream: bool | None = None  # --stream/--no-stream; default: when stdout is a terminal
    _told: list[str] = field(default_factory=list)  # the run warnings last shown (shown again only when they change)

    # ------------------------------------------------------------------ commands
    def command(self, line: str, read: Callable[[str], str]) -> bool:
        """Run a ``:command`` line; False when the REPL should end."""
        name, _, arg = line.strip()[1:].partition(" ")
        arg = arg.strip()
        if name in ("quit", "q", "exit"):
            return False
        if name == "help":
            say(HELP.format(tasks=", ".join(TASKS)))
        elif name == "task":
            self.switch_task(arg)
        elif name == "model":
            self.switch_model(arg)
        elif name == "set":
            self.set(arg)
        elif name == "paste":
            self.paste(read)
        else:
            error(f"unknown command :{name} (:help lists them)")
        return True

    def switch_task(self, name: str) -> None:
        try:
            self.runner.check_task(name)
            try:
                info = self.runner.resolve(name, self.model, how=":model")
            except RunError as exc:
                if self.model is None:
                    raise
                info = self.runner.resolve(name, None, how=":model")
                warn(f"{exc}; using {info.name!r}")
                self.model = None
        except RunError as exc:
            error(str(exc))
            return
        self.saved[self.task] = (self.overrides, self.options)
        self.task, self.info = name, info
        self.overrides, self.options = self.saved.get(name, ({}, {}))
        say(f"task {name}, model {info.name}" + ("; its own :set values are back" if name in self.saved else ""))

    def switch_model(self, spec: str) -> None:
        try:
            self.info = self.runner.resolve(self.task, spec or None, how=":model")
        except RunError as exc:
            error(str(exc))
            return
        self.model = spec or None
        say(f"model {self.info.name} ({self.info.source}: {self.info.path})")

    def set(self, arg: str) -> None:
        if not arg:
            self.show_settings()
            return
        overrides, options = dict(self.overrides), dict(self.options)
        for item in arg.split():
            key, eq, raw = item.partition("=")
            key = key.replace("-", "_")
            if not eq:
                error(f"write :set {key}=VALUE")
                return
            # A string option (a choice such as copy=off) takes the word as written.
            value = raw if isinstance(TASKS[self.task].options.get(key), str) else parse_value(raw)
            if key in TASKS[self.task].options:
                try:
                    options[key] = TASKS[self.task].check_option(key, value)
                except ValueError as exc:
                    error(str(exc))
                    return
            else:
                overrides[DECODING_FLAGS.get(key, key)] = value
        # Everything a run would check, checked now, so that a bad value is refused here and the
        # settings in force stay: the decoding values (before any model loads), the options
        # together, then what the model can do with them (its length, a method it lacks).
        try:
            config = self.config(overrides)
            self.runner.job(self.task, self.model, options=options, decoding=overrides,
                            model_how=":model", length_how=":set max_new_tokens")
        except RunError as exc:
            error(str(exc))
            return
        for message in config.ignored(overrides):
            warn(message)
        self.overrides, self.options = overrides, options

    def show_settings(self) -> None:
        config = self.config(self.overrides)
        values = " ".join(f"{f.name}={getattr(config, f.name)}" for f in fields(config))
        task = TASKS[self.task]
        shown = {**task.options, **task.implied(self.info.options.get(self.task, {})), **task.implied(self.options)}
        opts = " ".join(f"{k}={v}" for k, v in shown.items())
        say(f"task {self.task}, model {self.info.name}\n{values}" + (f"\n{opts}" if opts else ""))

    def paste(self, read: Callable[[str], str]) -> None:
        """Read lines up to an empty one and generate from them; Ctrl-C cancels the paste (the
        REPL goes on), Ctrl-D ends it: what was pasted is answered, then the REPL ends."""
        say("paste the text; end it with an empty line (Ctrl-C cancels)")
        lines = []
        try:
            while line := read("... "):
                lines.append(line)
        except KeyboardInterrupt:
            say(f"paste cancelled ({len(lines)} lines dropped)")
            return
        except EOFError:
            if lines:
                self.generate("\n".join(lines))
            raise
        if lines:
            self.generate("\n".join(lines))

    # ------------------------------------------------------------------ generation
    def config(self, overrides: dict[str, Any]) -> Any:
        return self.runner.config(self.task, self.info, overrides)

    def generate(self, text: str) -> None:
        stream = None
        try:
            job = self.runner.job(self.task, self.model, options=self.options, decoding=self.overrides,
                                  model_how=":model", length_how=":set max_new_tokens")
            told = [m for m in job.warnings if m not in job.config.ignored(self.overrides)]  # :set said those
            if told != self._told:
                for message in told:
                    warn(message)
                self._told = told
            stream = Stream() if stream_wanted(self.stream, single=True) else None
            out = job.task.run([make_record("repl", text)], job.config, on_text=stream)[0]
        except RunError as exc:
            error(str(exc))
            return
        except KeyboardInterrupt:
            if stream is not None and stream.shown:
                sys.stdout.write("\n")  # end the line streamed so far
            say("cancelled")
            return
        streamed = stream is not None and stream.close(out)
        for message in out.warnings:
            warn(message)
        if out.error is not None:
            error(out.error)
        elif not streamed:
            sys.stdout.write(format_text(out))
            sys.stdout.flush()


def parse_value(raw: str) -> Any:
    """``:set`` values: true/false, none, integers, floats, else the string itself."""
    lowered = raw.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def history_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "textgen" / "history"


def line_reader() -> Callable[[str], str]:
    """``read(prompt) -> line``, raising EOFError at the end and KeyboardInterrupt on Ctrl-C."""
    if not sys.stdin.isatty():

        def read_plain(prompt: str) -> str:
            line = sys.stdin.readline()
            if not line:
                raise EOFError
            return line.rstrip("\r\n")

        return read_plain
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    path = history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        history: Any = FileHistory(str(path))
    except OSError:
        history = InMemoryHistory()
    return PromptSession(history=history).prompt


def run_repl(
    task: str,
    *,
    model: str | None = None,
    overrides: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    device: Device | None = None,
    threads: int | None = None,
    allow_pickle: bool = False,
    dtype: Dtype | None = None,
    prompt_file: Path | None = None,
    stream: bool | None = None,
) -> int:
    """Run the REPL until :quit or end of input; returns the exit status."""
    try:
        runner = Runner(
            device=device.value if device else None, threads=threads, dtype=dtype.value if dtype else None,
            allow_pickle=allow_pickle, prompt_file=prompt_file,
        )
        runner.check_task(task)
        info = runner.resolve(task, model)
        config = runner.config(task, info, dict(overrides or {}))
        runner.check_options(task, options or {})
    except RunError as exc:
        fail(str(exc))
    for message in config.ignored(dict(overrides or {})):
        warn(message)
    repl = Repl(task, model, runner, info, overrides=dict(overrides or {}), options=dict(options or {}), stream=stream)
    read = line_reader()
    say(f"textgen {task} with model {info.name}; :help for commands, Ctrl-D to quit")
    while True:
        try:
            line = read(f"{repl.task}> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            return 0
        # Only the command test strips: a prompt's trailing space matters to a continuation.
        if line.strip().startswith(":"):
            try:
                if not repl.command(line, read):
                    return 0
            except EOFError:  # Ctrl-D inside :paste
                return 0
        elif line.strip():
            repl.generate(line)


def repl_command(
    task: Annotated[str, typer.Option("--task", help=f"Task to start with: {', '.join(TASKS)}.")] = "title",
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model to start with (default: the task's).")
    ] = None,
    device: Annotated[Device | None, typer.Option("--device", help="auto, cpu or cuda.")] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads for torch.")] = None,
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help="Load pickled weights; pickles can run code.")
    ] = False,
    dtype: Annotated[Dtype | None, typer.Option("--dtype", help="Hugging Face weights: bf16, fp16 or fp32.")] = None,
    prompt_file: Annotated[
        Path | None, typer.Option("--prompt-file", help="Chat models: a TOML file of task prompts.")
    ] = None,
    stream: Annotated[
        bool | None, typer.Option("--stream/--no-stream", help="Print outputs as they are generated (default: on a terminal).")
    ] = None,
    **decoding: Any,
) -> None:
    """Interactive session: line editing, history, :task, :set, :model, :paste, :help, :quit.

    The decoding flags (--beam, --sample, --max-new-tokens ...) set the starting task's settings, as :set does.

    Example: textgen repl --task continue --temperature 0.8
    """
    raise typer.Exit(
        run_repl(
            task, model=model, device=device, threads=threads, allow_pickle=allow_pickle, dtype=dtype,
            prompt_file=prompt_file, stream=stream, overrides=decoding_overrides(decoding),
        )
    )


# The task commands' decoding flags, in place of ``**decoding`` (typer reads the signature).
_signature = inspect.signature(repl_command, eval_str=True)
repl_command.__signature__ = _signature.replace(  # type: ignore[attr-defined]
    parameters=[p for p in _signature.parameters.values() if p.kind is not p.VAR_KEYWORD] + decoding_params("repl", {})
)
